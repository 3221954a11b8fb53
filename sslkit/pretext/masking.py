"""Masking for masked-prediction pretext tasks: image patches (MAE, BEiT), tokens (BERT), time
steps and frames.

Convention everywhere: ``mask`` is a bool tensor, **True = removed / hidden** (the positions the
model must predict), False = visible. Every mask has an *exact* number of True entries per sample,
``round(mask_ratio * n)`` (Python rounding, half to even), so a 0.75 ratio really hides 75%.
"""
from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import NamedTuple

import torch

from sslkit import checks
from sslkit.pretext import _inputs, _random
from sslkit.pretext.views import box_mask


# ----------------------------------------------------------------------------- patches

def patchify(x: torch.Tensor, patch_size: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, N, P*P*C) non-overlapping patches, row-major, MAE's layout (p, q, c)."""
    checks.tensor("x", x, ndim=4)
    B, C, H, W = x.shape
    P = checks.integer("patch_size", patch_size, min=1)
    if H % P or W % P:
        raise ValueError(f"patch_size={P} must divide the image size {H}x{W}; "
                         f"allowed: a common divisor of {H} and {W}")
    h, w = H // P, W // P
    x = x.reshape(B, C, h, P, w, P).permute(0, 2, 4, 3, 5, 1)  # (B, h, w, P, P, C)
    return x.reshape(B, h * w, P * P * C)


def unpatchify(patches: torch.Tensor, patch_size: int, channels: int,
               image_size: int | tuple[int, int]) -> torch.Tensor:
    """Inverse of :func:`patchify`: (B, N, P*P*C) -> (B, C, H, W)."""
    checks.tensor("patches", patches, ndim=3)
    P = checks.integer("patch_size", patch_size, min=1)
    C = checks.integer("channels", channels, min=1)
    H, W = _inputs.size_pair("image_size", image_size)
    if H % P or W % P:
        raise ValueError(f"patch_size={P} must divide image_size={(H, W)}")
    B, N, D = patches.shape
    h, w = H // P, W // P
    if N != h * w or D != P * P * C:
        raise ValueError(f"patches has shape {tuple(patches.shape)}; image_size={(H, W)}, patch_size={P}, "
                         f"channels={C} need (B, {h * w}, {P * P * C})")
    x = patches.reshape(B, h, w, P, P, C).permute(0, 5, 1, 3, 2, 4)  # (B, C, h, P, w, P)
    return x.reshape(B, C, H, W)


class Masking(NamedTuple):
    """Result of :func:`random_masking`.

    kept:        (B, K, D) the visible tokens, in random order (what the MAE encoder sees)
    mask:        (B, N) bool, True = removed (to reconstruct), in the original token order
    ids_keep:    (B, K) original indices of ``kept``: kept[b, i] = tokens[b, ids_keep[b, i]]
    ids_restore: (B, N) un-shuffle: concatenating kept with N - K mask tokens and gathering with
                 ids_restore puts every token back at its original position (MAE's decoder)
    """
    kept: torch.Tensor
    mask: torch.Tensor
    ids_keep: torch.Tensor
    ids_restore: torch.Tensor


def _count(name: str, ratio: float, n: int, *, keep_one: bool) -> int:
    removed = int(round(ratio * n))
    if keep_one and removed >= n:
        raise ValueError(f"{name}={ratio!r} would remove all {n} positions; allowed: a ratio leaving at "
                         f"least one visible, i.e. < {(n - 0.5) / n:.4g}")
    return removed


class MaskIndices(NamedTuple):
    """Result of :func:`mask_indices`: :class:`Masking` without ``kept`` (nothing is gathered)."""
    mask: torch.Tensor          # (B, N) bool, True = removed
    ids_keep: torch.Tensor      # (B, K) original indices of the kept tokens, in random order
    ids_restore: torch.Tensor   # (B, N) un-shuffle (see Masking)


def mask_indices(batch_size: int, num_tokens: int, mask_ratio: float,
                 device: torch.device | str | None = None, generator: torch.Generator | None = None
                 ) -> MaskIndices:
    """MAE random masking (He et al. 2021) as indices only: per sample, hide exactly
    round(mask_ratio * N) of ``num_tokens`` = N positions.

    Per-sample noise is argsorted: the K = N - removed positions with the smallest noise are kept.
    MAE's default ratio is 0.75 (high, because images are spatially redundant). The same draws as
    :func:`random_masking` for the same generator; a model gathers only the tokens it encodes.
    """
    B = checks.integer("batch_size", batch_size, min=0)
    N = checks.integer("num_tokens", num_tokens, min=0)
    ratio = _inputs.ratio("mask_ratio", mask_ratio)
    device = torch.device("cpu") if device is None else torch.device(device)
    _random.check_generator(generator, device)
    K = N - _count("mask_ratio", ratio, N, keep_one=True)
    noise = torch.rand((B, N), generator=generator, device=device)
    ids_shuffle = noise.argsort(dim=1)  # (B, N) ascending: first K are kept
    ids_restore = ids_shuffle.argsort(dim=1)  # (B, N)
    ids_keep = ids_shuffle[:, :K]  # (B, K)
    mask = ids_restore >= K  # (B, N) True where the token's rank is past K: removed
    return MaskIndices(mask, ids_keep, ids_restore)


def random_masking(tokens: torch.Tensor, mask_ratio: float, generator: torch.Generator | None = None) -> Masking:
    """MAE random masking (He et al. 2021): hide exactly round(mask_ratio * N) tokens per sample
    (:func:`mask_indices`) and gather the K visible ones, (B, N, D) -> kept (B, K, D)."""
    checks.tensor("tokens", tokens, ndim=3)
    B, N, D = tokens.shape
    m = mask_indices(B, N, mask_ratio, tokens.device, generator)
    kept = tokens.gather(1, m.ids_keep[:, :, None].expand(B, -1, D))  # (B, K, D)
    return Masking(kept, *m)


def block_masking(batch_size: int, grid: int | tuple[int, int], mask_ratio: float,
                  device: torch.device | str | None = None, generator: torch.Generator | None = None,
                  min_block: int = 4, aspect: tuple[float, float] = (0.3, 1 / 0.3), max_rounds: int = 64
                  ) -> torch.Tensor:
    """BEiT block-wise masking (Bao et al. 2021) of a ``grid`` of patches -> (B, N) bool, True = masked.

    BEiT adds random rectangles (area >= ``min_block`` = 4 patches, log-uniform aspect in
    [0.3, 1/0.3], BEiT's values) until the target is reached, rejecting a block that would overshoot
    or add nothing. Here every round draws one block for *all* samples at once; after at most
    ``max_rounds`` rounds the few patches still missing are masked at random, so each sample has
    exactly round(mask_ratio * N) masked patches (BEiT's own loop may stop a little short).
    BEiT masks 40% (0.4) of a 14x14 grid.
    """
    B = checks.integer("batch_size", batch_size, min=1)
    gh, gw = _inputs.size_pair("grid", grid)
    ratio = _inputs.ratio("mask_ratio", mask_ratio, allow_one=True)
    checks.integer("min_block", min_block, min=1)
    lo, _ = checks.number_range("aspect", aspect, min=0.0)
    checks.number("aspect[0]", lo, min=0.0, min_open=True)
    checks.integer("max_rounds", max_rounds, min=0)
    if device is None:
        device = generator.device if isinstance(generator, torch.Generator) else torch.device("cpu")
    device = torch.device(device)
    _random.check_generator(generator, device)
    target = _count("mask_ratio", ratio, gh * gw, keep_one=False)
    mask = torch.zeros(B, gh, gw, dtype=torch.bool, device=device)
    count = torch.zeros(B, dtype=torch.long, device=device)
    for _ in range(max_rounds if target > 0 else 0):
        remaining = target - count  # (B,)
        # Stop early once every sample is full - on the CPU only, where reading the flag is free.
        # On an accelerator reading it would wait for the GPU every round, so all rounds run: a
        # round with nothing left to add changes nothing (its blocks fail the acceptance rule).
        if device.type == "cpu" and not bool((remaining > 0).any()):
            break
        hi = remaining.clamp(min=min_block).float()
        area = min_block + torch.rand(B, generator=generator, device=device) * (hi - min_block)  # (B,)
        a = _random.log_uniform(B, aspect[0], aspect[1], generator, device)
        h = torch.round(torch.sqrt(area * a)).long().clamp(1, gh)
        w = torch.round(torch.sqrt(area / a)).long().clamp(1, gw)
        top = _random.randint_below(gh - h + 1, (B,), generator, device)
        left = _random.randint_below(gw - w + 1, (B,), generator, device)
        new = box_mask(gh, gw, top, left, h, w) & ~mask  # (B, gh, gw)
        added = new.sum(dim=(1, 2))
        ok = (added > 0) & (added <= remaining)  # BEiT's acceptance rule
        mask |= new & ok[:, None, None]
        count += added * ok
    mask = mask.reshape(B, gh * gw)
    return mask | _random.exact_choice(~mask, target - count, generator)  # top up to the exact count


# ----------------------------------------------------------------------------- tokens

@functools.lru_cache(maxsize=64)
def _round_table(length: int, ratio: float, device: torch.device) -> torch.Tensor:
    """(length + 1,) long on ``device``: entry m is ``round(ratio * m)`` (Python rounding, exact).

    Built once per (length, ratio, device), so ``mask_tokens`` needs no float64 (absent on MPS) and
    no host-to-device copy per call.
    """
    return torch.tensor([round(ratio * m) for m in range(length + 1)], dtype=torch.long).to(device)


def _special_list(special_ids: Sequence[int] | torch.Tensor, V: int) -> list[int] | torch.Tensor:
    """Python ints (validated), or a 1-D long tensor when it lives on an accelerator (not read back)."""
    if isinstance(special_ids, torch.Tensor):
        checks.tensor("special_ids", special_ids, ndim=(0, 1), dtypes="int")
        if special_ids.device.type != "cpu":
            return special_ids.reshape(-1).long()  # values not checked: reading them would sync
        special_ids = special_ids.reshape(-1).tolist()  # a CPU tensor: reading it is free
    if isinstance(special_ids, (str, bytes)) or not isinstance(special_ids, Sequence):
        raise ValueError(f"special_ids must be a sequence of ints or an int tensor "
                         f"({type(special_ids).__name__} given)")
    out = [checks.integer(f"special_ids[{i}]", s) for i, s in enumerate(special_ids)]
    if any(s < 0 or s >= V for s in out):
        raise ValueError(f"special_ids={out} must lie in [0, {V - 1}] (vocab_size={V})")
    if len(set(out)) >= V:
        raise ValueError(f"special_ids covers the whole vocabulary (vocab_size={V}); nothing to mask")
    return out


def _check_ids_on_cpu(ids: torch.Tensor, V: int) -> None:
    """Token ids must lie in [0, V). Read only for CPU tensors: on an accelerator the read would
    make the host wait for the GPU on every training step, so there the ids are not checked."""
    if ids.device.type == "cpu" and ids.numel():
        lo, hi = (int(v) for v in torch.aminmax(ids))
        if lo < 0 or hi >= V:
            raise ValueError(f"ids has values in [{lo}, {hi}]; allowed: [0, {V - 1}] (vocab_size={V})")


def mask_tokens(ids: torch.Tensor, vocab_size: int, special_ids: Sequence[int] | torch.Tensor, mask_id: int,
                mask_ratio: float = 0.15, generator: torch.Generator | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """BERT masked-language-model corruption (Devlin et al. 2019).

    Chooses exactly round(mask_ratio * m) tokens per sequence among its m maskable ones (at least 1
    when m > 0, so no sequence is left without a target) - special and padding tokens
    (``special_ids``) are never chosen. Of the chosen tokens, independently: 80% become ``mask_id``,
    10% a random non-special token, 10% stay unchanged (so the model cannot tell from the input
    which visible tokens are targets). 0.15 is BERT's ratio.

    Returns ``(inputs, targets, mask)``: inputs (B, L) corrupted ids, targets (B, L) original id
    where chosen and -100 elsewhere (cross-entropy's ignore_index), mask (B, L) bool True = chosen.

    Runs without host-device syncs, so it can sit in a training step. Pass ``special_ids`` as a
    list of ints (or a CPU tensor): they are validated on the host; a tensor on an accelerator is
    used as is, its values unchecked. The values of ``ids`` are range-checked only when ``ids`` is
    on the CPU (on an accelerator the check would wait for the GPU on every call).
    """
    checks.tensor("ids", ids, ndim=2, dtypes="int")
    V = checks.integer("vocab_size", vocab_size, min=2)
    checks.integer("mask_id", mask_id, min=0, max=V - 1)
    ratio = _inputs.ratio("mask_ratio", mask_ratio, allow_zero=False, allow_one=True)
    special = _special_list(special_ids, V)
    _random.check_generator(generator, ids.device)
    _check_ids_on_cpu(ids, V)
    dev = ids.device
    allowed = torch.ones(V, dtype=torch.bool, device=dev)  # (V,) True = not special
    if isinstance(special, torch.Tensor):
        allowed[special.to(dev)] = False
    else:
        for s in special:  # a few ids: one small fill each, no host-to-device copy
            allowed[s] = False
    B, L = ids.shape
    maskable = allowed[ids]  # (B, L)
    m = maskable.sum(dim=1)  # (B,)
    n = _round_table(L, ratio, dev)[m]  # (B,) round(ratio * m)
    n = torch.where(m > 0, n.clamp(min=1), n)
    chosen = _random.exact_choice(maskable, n, generator)  # (B, L)
    u = torch.rand((B, L), generator=generator, device=dev)
    to_mask = chosen & (u < 0.8)  # 80% [MASK]
    to_random = chosen & (u >= 0.8) & (u < 0.9)  # 10% random token, the last 10% unchanged
    # The non-special ids in increasing order, then the special ones (stable sort of 0/1 keys); a
    # draw below their count picks a uniformly random non-special token.
    allowed_ids = torch.argsort((~allowed).to(torch.uint8), stable=True)  # (V,)
    rand_ids = allowed_ids[_random.randint_below(allowed.sum(), (B, L), generator, dev)]
    inputs = torch.where(to_mask, torch.full_like(ids, mask_id), ids)
    inputs = torch.where(to_random, rand_ids.to(ids.dtype), inputs)
    targets = torch.where(chosen, ids, torch.full_like(ids, -100))
    return inputs, targets, chosen


# ----------------------------------------------------------------------------- signals and clips

def mask_time_steps(x: torch.Tensor, mask_ratio: float, span: int = 1, generator: torch.Generator | None = None,
                    fill: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Hide time steps of signals (B, C, T) in non-overlapping spans of ``span`` steps.

    Exactly ``n * span`` steps are hidden per sample, n = min(round(mask_ratio * T / span), T // span)
    (so exactly round(mask_ratio * T) for span=1). Spans (wav2vec 2.0 masks spans of 10) stop the
    model from solving the task by interpolating from the neighbouring steps.
    Returns ``(masked, mask)``: masked (B, C, T) with hidden steps set to ``fill``, mask (B, T).
    """
    checks.tensor("x", x, ndim=3, dtypes="float")
    ratio = _inputs.ratio("mask_ratio", mask_ratio)
    B, _, T = x.shape
    span = checks.integer("span", span, min=1, max=T)
    _random.check_generator(generator, x.device)
    n = min(int(round(ratio * T / span)), T // span)
    # Non-overlapping spans = choose n of the S = T - n (span - 1) "slots"; the i-th chosen slot
    # (in order) starts at slot + i (span - 1), which leaves room for the spans before it.
    S = T - n * (span - 1)
    count = torch.full((B,), n, dtype=torch.long, device=x.device)
    chosen = _random.exact_choice(torch.ones(B, S, dtype=torch.bool, device=x.device), count, generator)
    order = chosen.long().cumsum(dim=1) - 1  # (B, S) index among chosen slots
    start = (torch.arange(S, device=x.device) + order.clamp(min=0) * (span - 1)).clamp(max=T - 1)
    starts = torch.zeros(B, T, dtype=torch.long, device=x.device).scatter_add_(1, start, chosen.long()) > 0
    mask = starts.clone()
    for k in range(1, span):  # extend every start over its span
        mask[:, k:] |= starts[:, :T - k]
    return x.masked_fill(mask[:, None, :], fill), mask


def mask_frames(clips: torch.Tensor, mask_ratio: float, generator: torch.Generator | None = None,
                fill: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Hide exactly round(mask_ratio * T) random frames of clips (B, T, C, H, W).

    Returns ``(masked, mask)``: masked clips with hidden frames set to ``fill``, mask (B, T).
    """
    checks.tensor("clips", clips, ndim=5, dtypes="float")
    ratio = _inputs.ratio("mask_ratio", mask_ratio)
    _random.check_generator(generator, clips.device)
    B, T = clips.shape[:2]
    count = torch.full((B,), _count("mask_ratio", ratio, T, keep_one=False), dtype=torch.long,
                       device=clips.device)
    mask = _random.exact_choice(torch.ones(B, T, dtype=torch.bool, device=clips.device), count, generator)
    return clips.masked_fill(mask[:, :, None, None, None], fill), mask


__all__ = ["patchify", "unpatchify", "Masking", "random_masking", "block_masking", "mask_tokens",
           "mask_time_steps", "mask_frames"]
