"""Checkers for the non-loss exercises: random_masking (01), ema_update (03), patchify (04),
knn_predict (05) and pca (06)."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from sslkit.exercises import reference as ref
from sslkit.exercises.core import Reporter, describe_mismatch


def _field(out: Any, i: int, name: str) -> Any:
    """Masking results may be a NamedTuple, a plain tuple or an object with attributes."""
    if hasattr(out, name):
        return getattr(out, name)
    return out[i]


# ---- random_masking ------------------------------------------------------------------------------
def check_random_masking(fn: Callable[..., Any], r: Reporter) -> None:
    B, N, D, ratio = 4, 16, 3, 0.75
    tokens = torch.arange(1, B * N * D + 1, dtype=torch.float32).reshape(B, N, D)  # all distinct, > 0
    K = N - round(ratio * N)
    ok, out = r.call("shapes (B=4, N=16, ratio=0.75)", fn, tokens, ratio, torch.Generator().manual_seed(0))
    if not ok:
        return
    try:
        kept, mask, ids_keep, ids_restore = (_field(out, i, n) for i, n in
                                             enumerate(("kept", "mask", "ids_keep", "ids_restore")))
    except (TypeError, IndexError, KeyError):
        r.fail("shapes (B=4, N=16, ratio=0.75)",
               f"return (kept, mask, ids_keep, ids_restore); got {type(out).__name__}")
        return
    wants = {"kept": (kept, (B, K, D), None), "mask": (mask, (B, N), torch.bool),
             "ids_keep": (ids_keep, (B, K), torch.int64), "ids_restore": (ids_restore, (B, N), torch.int64)}
    for what, (t, shape, dtype) in wants.items():
        if not isinstance(t, torch.Tensor) or tuple(t.shape) != shape:
            got = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
            r.fail("shapes (B=4, N=16, ratio=0.75)", f"wrong {what} shape: expected {shape}, got {got}",
                   "hide round(mask_ratio * N) tokens per sample and keep the other K" if what in ("kept", "ids_keep") else "")
            return
        if dtype is not None and t.dtype != dtype:
            r.fail("shapes (B=4, N=16, ratio=0.75)", f"wrong dtype for {what}: expected {dtype}, got {t.dtype}")
            return
    r.ok("shapes (B=4, N=16, ratio=0.75)")

    gathered = tokens.gather(1, ids_keep.unsqueeze(-1).expand(-1, -1, D))
    if describe_mismatch(kept, gathered) is None:
        r.ok("kept == tokens at ids_keep")
    else:
        r.fail("kept == tokens at ids_keep", "kept does not hold the tokens at positions ids_keep",
               "gather along dim 1 with ids_keep expanded to (B, K, D)")
    kept_is_masked = mask.gather(1, ids_keep)
    if kept_is_masked.all() and (~mask).sum(1).eq(N - K).all():
        r.fail("mask marks the removed tokens", "mask is True at the kept positions",
               "the mask is inverted: True must mean *removed* (hidden from the encoder)")
    elif kept_is_masked.any() or not mask.sum(1).eq(N - K).all():
        r.fail("mask marks the removed tokens",
               f"expected {N - K} True (removed) per sample, none at ids_keep; got {mask.sum(1).tolist()}")
    else:
        r.ok("mask marks the removed tokens")
    # MAE's decoder appends N - K mask tokens to `kept` and unshuffles with ids_restore.
    full = torch.cat([kept, torch.zeros(B, N - K, D)], dim=1).gather(
        1, ids_restore.unsqueeze(-1).expand(-1, -1, D))
    if describe_mismatch(full, tokens.masked_fill(mask.unsqueeze(-1), 0)) is None:
        r.ok("ids_restore unshuffles [kept, mask tokens]")
    else:
        r.fail("ids_restore unshuffles [kept, mask tokens]",
               "cat([kept, mask tokens]) gathered with ids_restore does not put tokens back in place",
               "ids_restore is the inverse permutation: ids_shuffle.argsort(dim=1)")

    masks = _mask_of(fn, torch.zeros(64, N, D), ratio, torch.Generator().manual_seed(1))
    if masks is not None:
        if (masks == masks[0]).all():
            r.fail("a different mask per sample", "all 64 samples got the same mask",
                   "draw the noise per sample: torch.rand(B, N, generator=generator)")
        else:
            r.ok("a different mask per sample")
    a = _mask_of(fn, tokens, ratio, torch.Generator().manual_seed(5))
    b = _mask_of(fn, tokens, ratio, torch.Generator().manual_seed(5))
    c = _mask_of(fn, torch.zeros(64, N, D), ratio, torch.Generator().manual_seed(6))
    if a is not None and b is not None and c is not None and masks is not None:
        if not torch.equal(a, b) or torch.equal(c, masks):
            r.fail("uses the generator", "the same generator seed gave different masks (or different "
                   "seeds the same)", "pass generator=generator to torch.rand")
        else:
            r.ok("uses the generator")
    many = _mask_of(fn, torch.zeros(4000, N, 1), ratio, torch.Generator().manual_seed(2))
    if many is not None:
        freq = many.float().mean(0)  # (N,) how often each position is removed
        if (freq - ratio).abs().max() > 0.05:  # 4000 samples: std of a frequency ~0.007
            r.fail("every position equally likely", f"removal frequency per position ranges "
                   f"{freq.min():.2f}..{freq.max():.2f}; expected about {ratio} everywhere")
        else:
            r.ok("every position equally likely")
    for n, rt in ((10, 0.5), (10, 0.9), (7, 0.0)):
        name = f"N={n}, mask_ratio={rt} keeps {n - round(rt * n)}"
        ok, out = r.call(name, fn, torch.randn(2, n, 4), rt)
        if ok:
            kept = _field(out, 0, "kept")
            want = (2, n - round(rt * n), 4)
            if isinstance(kept, torch.Tensor) and tuple(kept.shape) == want:
                r.ok(name)
            else:
                r.fail(name, f"wrong kept shape: expected {want}, got "
                       f"{tuple(kept.shape) if isinstance(kept, torch.Tensor) else type(kept).__name__}",
                       "compute the count as N - round(mask_ratio * N); int(N * (1 - mask_ratio)) "
                       "suffers from float rounding (10 * (1 - 0.9) = 0.999...)")
    x = torch.randn(2, 8, 4, requires_grad=True)
    ok, out = r.call("gradient flows to the kept tokens", fn, x, 0.5)
    if ok:
        kept = _field(out, 0, "kept")
        if isinstance(kept, torch.Tensor) and kept.requires_grad:
            kept.sum().backward()
            if x.grad is not None and int((x.grad != 0).sum()) == 2 * 4 * 4:
                r.ok("gradient flows to the kept tokens")
                return
        r.fail("gradient flows to the kept tokens", "gradient missing: kept is not differentiable "
               "w.r.t. tokens", "select tokens with gather (no .detach(), no Python loops over .item())")


def _mask_of(fn: Callable[..., Any], x: torch.Tensor, ratio: float, g: torch.Generator) -> torch.Tensor | None:
    try:
        m = _field(fn(x, ratio, g), 1, "mask")
    except Exception:  # already reported by the shape case
        return None
    return m if isinstance(m, torch.Tensor) and m.shape == x.shape[:2] else None


# ---- ema_update ----------------------------------------------------------------------------------
def _pair(seed: int) -> tuple[nn.Module, nn.Module]:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2)), nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))


def check_ema_update(fn: Callable[..., Any], r: Reporter) -> None:
    for m in (0.9, 0.0, 1.0, 0.996):
        name = f"momentum={m}"
        target, online = _pair(seed=int(m * 1000))
        t0 = [p.detach().clone() for p in target.parameters()]
        o0 = [p.detach().clone() for p in online.parameters()]
        ok, _ = r.call(name, fn, target, online, m)
        if not ok:
            continue
        if any(not torch.equal(p, q) for p, q in zip(online.parameters(), o0)):
            r.fail(name, "the online network changed", "only the target is updated; the online "
                   "network is trained by the optimiser")
            continue
        want = [m * t + (1 - m) * o for t, o in zip(t0, o0)]
        swapped = [(1 - m) * t + m * o for t, o in zip(t0, o0)]
        got = [p.detach() for p in target.parameters()]
        bad = [describe_mismatch(g, w, what="target parameter", atol=1e-6) for g, w in zip(got, want)]
        if not any(bad):
            grads = [p.grad_fn is not None for p in target.parameters()]
            if any(grads):
                r.fail(name, "the target parameters carry an autograd history",
                       "do the update under torch.no_grad() so no gradient flows into the target")
            else:
                r.ok(name)
            continue
        if all(torch.equal(g, t) for g, t in zip(got, t0)):
            hint = "update the target parameters in place: p_t.mul_(m).add_(p_o, alpha=1 - m)"
            r.fail(name, "the target parameters did not change", hint if m != 1.0 else "")
        elif all(describe_mismatch(g, s, atol=1e-6) is None for g, s in zip(got, swapped)):
            r.fail(name, next(b for b in bad if b),
                   "momentum and 1 - momentum are swapped: target <- m * target + (1 - m) * online")
        else:
            r.fail(name, next(b for b in bad if b))


# ---- patchify ------------------------------------------------------------------------------------
def check_patchify(fn: Callable[..., torch.Tensor], r: Reporter) -> None:
    cases = {"one 4x4 grey image, patch 2": (torch.arange(16.0).reshape(1, 1, 4, 4), 2),
             "RGB 8x8, patch 4": (torch.randn(2, 3, 8, 8), 4),
             "non-square 6x9, patch 3": (torch.randn(2, 3, 6, 9), 3),
             "patch 1 (every pixel a patch)": (torch.randn(1, 3, 2, 2), 1)}
    for name, (x, p) in cases.items():
        ok, out = r.call(name, fn, x, p)
        if not ok:
            continue
        B, C, H, W = x.shape
        mistakes = {"the pixels inside a patch must be ordered (row, column, channel); "
                    "permute to (B, h, w, p, p, C) before the final reshape":
                    x.reshape(B, C, H // p, p, W // p, p).permute(0, 2, 4, 1, 3, 5).reshape(B, -1, p * p * C),
                    "a plain reshape mixes pixels of different patches; split H and W into (h, p) and "
                    "(w, p) and permute": x.reshape(B, -1, p * p * C)}
        r.compare(name, out, ref.patchify(x, p), what="patches", mistakes=mistakes)


# ---- knn_predict ---------------------------------------------------------------------------------
def _knn(q: torch.Tensor, bank: torch.Tensor, labels: torch.Tensor, k: int, t: float, sim: str = "cos",
         weighted: bool = True) -> torch.Tensor:
    """kNN variants used to recognise typical mistakes (sim: "cos", "dot" or "euclid")."""
    if sim == "cos":
        s = torch.nn.functional.normalize(q, dim=1) @ torch.nn.functional.normalize(bank, dim=1).T
    elif sim == "dot":
        s = q @ bank.T
    else:
        s = -torch.cdist(q, bank)
    top, idx = s.topk(k, dim=1)
    w = (top / t).exp() if weighted else torch.ones_like(top)
    votes = torch.zeros(q.shape[0], int(labels.max()) + 1).scatter_add_(1, labels[idx], w)
    return votes.argmax(dim=1)


def check_knn_predict(fn: Callable[..., torch.Tensor], r: Reporter) -> None:
    e = torch.eye(3)
    q = e[:1]  # (1, 3) the query points along the first axis
    cases = {
        # Cosine picks the short vector along x; a raw dot product picks the long diagonal one.
        "cosine, not dot product (k=1)": (q, torch.tensor([[0.5, 0, 0], [3.0, 3, 0]]), torch.tensor([0, 1]), 1, 0.07),
        # Cosine picks the long vector along x; Euclidean distance picks the short diagonal one.
        "cosine, not Euclidean distance (k=1)": (q, torch.tensor([[10.0, 0, 0], [0.6, 0.6, 0]]),
                                                 torch.tensor([0, 1]), 1, 0.07),
        # One very similar neighbour of class 0 outweighs two less similar ones of class 1.
        "votes weighted by exp(sim / T) (k=3)": (q, torch.stack([e[0], e[0] + 0.9 * e[1], e[0] + 0.9 * e[2]]),
                                                 torch.tensor([0, 1, 1]), 3, 0.05),
        # With k=1 only the nearest votes; with the whole bank the two class-1 items win.
        "only the k nearest vote (k=1, T=1)": (q, torch.stack([e[0], e[0] + e[1], e[0] + e[2]]),
                                               torch.tensor([2, 1, 1]), 1, 1.0),
        "random bank (M=20, N=50, 4 classes, k=5)": (torch.randn(20, 8), torch.randn(50, 8),
                                                      torch.arange(50) % 4, 5, 0.1),
    }
    for name, (qq, bank, labels, k, t) in cases.items():
        c = int(labels.max()) + 1
        ok, out = r.call(name, fn, bank, labels, qq, c, k=k, temperature=t)
        if not ok:
            continue
        mistakes = {"use cosine similarity: F.normalize the query and the bank first":
                    _knn(qq, bank, labels, k, t, "dot"),
                    "use cosine similarity (largest = nearest), not Euclidean distance":
                    _knn(qq, bank, labels, k, t, "euclid"),
                    "weight each neighbour's vote by exp(similarity / temperature)":
                    _knn(qq, bank, labels, k, t, weighted=False),
                    "only the k most similar bank items vote (torch.topk(sim, k))":
                    _knn(qq, bank, labels, len(bank), t)}
        r.compare(name, out, ref.knn_predict(bank, labels, qq, c, k, t), what="predictions", mistakes=mistakes)


# ---- pca -----------------------------------------------------------------------------------------
def _align_signs(z: torch.Tensor, want: torch.Tensor) -> torch.Tensor:
    """Principal directions are defined up to sign: flip columns of z to agree with want."""
    return z * torch.where((z * want).sum(0, keepdim=True) < 0, -1.0, 1.0)


def check_pca(fn: Callable[..., torch.Tensor], r: Reporter) -> None:
    g = torch.Generator().manual_seed(30)
    basis = torch.linalg.qr(torch.randn(6, 6, generator=g))[0]
    scales = torch.tensor([5.0, 3.0, 1.0, 0.5, 0.2, 0.1])            # clear gaps between components
    x = (torch.randn(200, 6, generator=g) * scales) @ basis.T + 4.0  # mean far from 0
    xc = x - x.mean(0)
    vh = torch.linalg.svd(xc, full_matrices=False)[2]
    for name, k in (("2 components of 6-D data", 2), ("all 6 components", 6)):
        ok, out = r.call(name, fn, x, k)
        if not ok:
            continue
        want = ref.pca(x, k)
        if isinstance(out, torch.Tensor) and out.shape == want.shape and out.dtype == want.dtype:
            out = _align_signs(out, want)
        mistakes = {"centre the data (subtract the mean) before finding the directions":
                    x @ torch.linalg.svd(x, full_matrices=False)[2][:k].T,
                    "project the *centred* data onto the directions": x @ vh[:k].T,
                    "take the directions with the LARGEST variance (first rows of V^T)": xc @ vh[-k:].flip(0).T}
        mistakes = {h: _align_signs(m, want) for h, m in mistakes.items()}
        r.compare(name, out, want, what="projection", atol=1e-3, mistakes=mistakes)
