"""Checkers and typical mistakes for the masking exercises of notebook 01: random_masking (MAE) and
bert_mask (BERT's 80/10/10 rule). Both are random, so the cases check properties (shapes, which
tokens are kept, the inverse permutation, frequencies, use of the generator) rather than values."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from sslkit.exercises.core import Mistake, Reporter, variant

OK = "ok"


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ---- random_masking ------------------------------------------------------------------------------
def _random_masking(tokens, mask_ratio, generator=None, *, inverted=False, forward=False, per_batch=False,
                    int_count=False, use_generator=True, detach=False, kept_from_restore=False):
    B, N, D = tokens.shape
    K = int(N * (1 - mask_ratio)) if int_count else N - round(mask_ratio * N)
    noise = torch.rand(1 if per_batch else B, N, generator=generator if use_generator else None).expand(B, N)
    ids_shuffle = noise.argsort(dim=1)
    ids_restore = ids_shuffle.argsort(dim=1)
    ids_keep = ids_shuffle[:, :K]
    index = ids_restore[:, :K] if kept_from_restore else ids_keep
    kept = tokens.gather(1, index.unsqueeze(-1).expand(-1, -1, D))
    mask = ids_restore >= K
    return (kept.detach() if detach else kept, ~mask if inverted else mask, ids_keep,
            ids_shuffle if forward else ids_restore)


RANDOM_MASKING_MISTAKES = {
    "mask inverted": Mistake(
        "The mask marks what the encoder does *not* see: True means removed (hidden), False means kept.",
        variant(_random_masking, inverted=True)),
    "ids_restore is the shuffle": Mistake(
        "ids_restore must undo the shuffle: for each original position it says where that token sits in the "
        "shuffled order. The shuffle itself does the opposite; its inverse permutation is what the decoder "
        "needs.", variant(_random_masking, forward=True)),
    "one mask for the whole batch": Mistake(
        "Every sample needs its own random mask: draw the random numbers per sample, not once per batch.",
        variant(_random_masking, per_batch=True)),
    "float rounding in the count": Mistake(
        "Compute the number of hidden tokens by rounding mask_ratio * N, then keep the rest; truncating "
        "N * (1 - mask_ratio) suffers from float rounding (10 * (1 - 0.9) is 0.999...).",
        variant(_random_masking, int_count=True)),
    "generator ignored": Mistake(
        "Draw the randomness from the generator you are given, so that the same seed gives the same mask.",
        variant(_random_masking, use_generator=False)),
    "kept tokens cut off from the graph": Mistake(
        "The kept tokens must stay connected to the input tokens so that gradients reach them: select them "
        "with tensor indexing, not through detached copies.", variant(_random_masking, detach=True)),
    "kept tokens picked by ids_restore": Mistake(
        "The kept tokens are the tokens at the positions ids_keep, the first K positions of the shuffled order; "
        "ids_restore is a different permutation (its inverse).", variant(_random_masking, kept_from_restore=True)),
}


def _fields(out: Any) -> tuple[Any, Any, Any, Any]:
    names = ("kept", "mask", "ids_keep", "ids_restore")
    if all(hasattr(out, n) for n in names):
        return tuple(getattr(out, n) for n in names)  # type: ignore[return-value]
    if isinstance(out, (tuple, list)) and len(out) == 4:
        return tuple(out)  # type: ignore[return-value]
    raise TypeError(f"expected (kept, mask, ids_keep, ids_restore), got {type(out).__name__}")


TOKENS = torch.arange(1.0, 4 * 16 * 3 + 1).reshape(4, 16, 3)  # (B=4, N=16, D=3), all distinct


def _masking_case(prop: Callable[..., str]) -> Callable[[Callable[..., Any]], Any]:
    def observe(call: Callable[..., Any]) -> str:
        kept, mask, ids_keep, ids_restore = _fields(call(TOKENS, 0.75, _gen(0)))
        return prop(kept, mask, ids_keep, ids_restore)
    return observe


def _shapes(kept, mask, ids_keep, ids_restore) -> tuple:
    return tuple((tuple(t.shape), str(t.dtype)) if isinstance(t, torch.Tensor) else type(t).__name__
                 for t in (kept, mask, ids_keep, ids_restore))


def _shapes_judge(got: tuple, want: tuple) -> str | None:
    for what, g, w in zip(("kept", "mask", "ids_keep", "ids_restore"), got, want):
        if g != w:
            return f"{what}: expected shape {w[0]} and {w[1]}, got " + (f"{g[0]} and {g[1]}" if isinstance(g, tuple) else g)
    return None


def _kept_prop(kept, mask, ids_keep, ids_restore) -> str:
    want = TOKENS.gather(1, ids_keep.unsqueeze(-1).expand(-1, -1, TOKENS.shape[2]))
    return OK if kept.shape == want.shape and torch.equal(kept.detach(), want) else "kept != tokens at ids_keep"


def _mask_prop(kept, mask, ids_keep, ids_restore) -> str:
    at_kept = torch.zeros(mask.shape, dtype=torch.bool).scatter(1, ids_keep, True)
    if torch.equal(mask, ~at_kept):
        return OK
    return "True at the kept positions" if torch.equal(mask, at_kept) else "wrong positions"


def _restore_prop(kept, mask, ids_keep, ids_restore) -> str:
    N, K = ids_restore.shape[1], ids_keep.shape[1]
    if not torch.equal(ids_restore.sort(dim=1).values, torch.arange(N).expand_as(ids_restore)):
        return "not a permutation"
    if torch.equal(ids_restore.gather(1, ids_keep), torch.arange(K).expand_as(ids_keep)):
        return OK
    return "the shuffle itself" if torch.equal(ids_restore[:, :K], ids_keep) else "wrong permutation"


def _masks(call: Callable[..., Any], x: torch.Tensor, seed: int) -> torch.Tensor:
    return _fields(call(x, 0.75, _gen(seed)))[1]


def _per_sample(call: Callable[..., Any]) -> str:
    m = _masks(call, torch.zeros(64, 16, 1), 1)
    return "the same mask for all 64 samples" if bool((m == m[0]).all()) else OK


def _generator(call: Callable[..., Any]) -> str:
    a, b = _masks(call, torch.zeros(8, 16, 1), 5), _masks(call, torch.zeros(8, 16, 1), 5)
    c = _masks(call, torch.zeros(8, 16, 1), 6)
    if not torch.equal(a, b):
        return "the same seed gave different masks"
    return "different seeds gave the same mask" if torch.equal(a, c) else OK


def _uniform(call: Callable[..., Any]) -> str:
    freq = _masks(call, torch.zeros(4000, 16, 1), 2).float().mean(0)   # (N,) removal frequency per position
    # 4000 samples: the std of a frequency is about 0.007, so 0.05 is 7 standard deviations.
    return OK if (freq - 0.75).abs().max() <= 0.05 else f"removal frequencies {freq.min():.2f}..{freq.max():.2f}"


SIZES = ((16, 0.75), (10, 0.5), (10, 0.9), (7, 0.0), (5, 1.0))


def _counts(call: Callable[..., Any]) -> tuple:
    return tuple(tuple(_fields(call(torch.randn(2, n, 4, generator=_gen(n)), ratio, _gen(1)))[0].shape)
                 for n, ratio in SIZES)


def _counts_judge(got: tuple, want: tuple) -> str | None:
    for (n, ratio), g, w in zip(SIZES, got, want):
        if g != w:
            return f"N={n}, mask_ratio={ratio}: kept has shape {g}, expected {w} (N - round(mask_ratio * N) kept)"
    return None


def _gradient(call: Callable[..., Any]) -> str:
    x = torch.randn(2, 8, 4, generator=_gen(3)).requires_grad_(True)
    kept = _fields(call(x, 0.5, _gen(4)))[0]
    if not isinstance(kept, torch.Tensor) or not kept.requires_grad:
        return "kept carries no gradient"
    kept.sum().backward()
    return OK if x.grad is not None and int((x.grad != 0).sum()) == 2 * 4 * 4 else "wrong gradient"


def _verdict(what: str) -> Callable[[Any, Any], str | None]:
    return lambda got, want: None if got == want else f"{what}: {got}"


def check_random_masking(r: Reporter) -> None:
    r.observe("shapes and dtypes (B=4, N=16, mask_ratio=0.75)", _masking_case(_shapes), _shapes_judge)
    r.observe("kept holds the tokens at ids_keep", _masking_case(_kept_prop), _verdict("kept"))
    r.observe("mask is True exactly at the removed tokens", _masking_case(_mask_prop), _verdict("mask"))
    r.observe("ids_restore undoes the shuffle", _masking_case(_restore_prop), _verdict("ids_restore"))
    r.observe("a different mask for every sample", _per_sample, _verdict("masks"))
    r.observe("uses the generator", _generator, _verdict("generator"))
    r.observe("every position equally likely to be hidden", _uniform, _verdict("4000 samples"))
    r.observe("keeps N - round(mask_ratio * N) tokens", _counts, _counts_judge)
    r.observe("gradients flow to the kept tokens", _gradient, _verdict("gradient"))


# ---- bert_mask -----------------------------------------------------------------------------------
V, SPECIAL, MASK_ID = 50, (0, 1, 2, 3), 1   # [PAD]=0, [MASK]=1, [CLS]=2, [UNK]=3


def _bert_mask(ids, chosen, vocab_size, mask_id, special_ids, generator=None, *, all_mask=False,
               no_ignore=False, corrupted_targets=False, everywhere=False, overlap=False, specials=False,
               per_sequence=False, use_generator=True):
    g = generator if use_generator else None
    B, L = ids.shape
    u = torch.rand(B, 1 if per_sequence else L, generator=g).expand(B, L)
    words = torch.tensor([w for w in range(vocab_size) if specials or w not in special_ids])
    rand_words = words[torch.randint(len(words), (B, L), generator=g)]
    where = torch.ones_like(chosen) if everywhere else chosen
    inputs = ids.clone()
    if all_mask:
        inputs[where] = mask_id
    elif overlap:
        inputs[where & (u < 0.8)] = mask_id
        inputs[where & (u < 0.1)] = rand_words[where & (u < 0.1)]
    else:
        inputs[where & (u < 0.8)] = mask_id
        pick = where & (u >= 0.8) & (u < 0.9)
        inputs[pick] = rand_words[pick]
    source = inputs if corrupted_targets else ids
    targets = ids.clone() if no_ignore else torch.where(chosen, source, torch.full_like(ids, -100))
    return inputs, targets


BERT_MASK_MISTAKES = {
    "every chosen token becomes [MASK]": Mistake(
        "Not every chosen token becomes [MASK]: 80% do, 10% become a random word and 10% stay as they are. "
        "[MASK] never appears in real text, so the model must also predict words it can see.",
        variant(_bert_mask, all_mask=True)),
    "no ignore index": Mistake(
        "Only the chosen tokens are prediction targets; every other position gets the ignore index -100, "
        "which the cross-entropy skips.", variant(_bert_mask, no_ignore=True)),
    "targets are the corrupted tokens": Mistake(
        "The targets are the *original* words at the chosen positions, not what the input shows there.",
        variant(_bert_mask, corrupted_targets=True)),
    "tokens that were not chosen corrupted": Mistake(
        "Only the chosen tokens are corrupted; all the others are left exactly as they are.",
        variant(_bert_mask, everywhere=True)),
    "the three outcomes overlap": Mistake(
        "The three outcomes must not overlap: of the chosen tokens, 80% become [MASK], a *different* 10% a "
        "random word, and the remaining 10% stay unchanged.", variant(_bert_mask, overlap=True)),
    "special tokens as random words": Mistake(
        "A random replacement is an ordinary word of the vocabulary, never a special token like [PAD] or "
        "[CLS].", variant(_bert_mask, specials=True)),
    "one outcome per sequence": Mistake(
        "Each chosen token draws its own outcome, independently of the others in the sequence.",
        variant(_bert_mask, per_sequence=True)),
    "generator ignored": Mistake(
        "Draw the randomness from the generator you are given, so that the same seed gives the same result.",
        variant(_bert_mask, use_generator=False)),
}


def _bert_inputs(B: int, L: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = _gen(seed)
    ids = torch.randint(len(SPECIAL), V, (B, L), generator=g)   # ordinary words only
    ids[:, 0] = 2                                                # [CLS] first, never chosen
    chosen = torch.rand(B, L, generator=g) < 0.5
    chosen[:, 0] = False
    return ids, chosen


IDS, CHOSEN = _bert_inputs(400, 32, seed=10)   # about 6200 chosen tokens


def _bert(call: Callable[..., Any], seed: int = 11, data: tuple = (IDS, CHOSEN)) -> tuple[Any, Any]:
    out = call(data[0], data[1], V, MASK_ID, list(SPECIAL), _gen(seed))
    if not (isinstance(out, (tuple, list)) and len(out) == 2):
        raise TypeError(f"expected (inputs, targets), got {type(out).__name__}")
    return out[0], out[1]


def _bert_shapes(call: Callable[..., Any]) -> tuple:
    ids, chosen = _bert_inputs(3, 8, seed=12)
    return tuple((tuple(t.shape), str(t.dtype)) if isinstance(t, torch.Tensor) else type(t).__name__
                 for t in _bert(call, data=(ids, chosen)))


def _targets(call: Callable[..., Any]) -> str:
    inputs, targets = _bert(call)
    if torch.equal(targets, torch.where(CHOSEN, IDS, -100)):
        return OK
    if torch.equal(targets, IDS):
        return "the original word at every position (no -100 where not chosen)"
    if torch.equal(targets, torch.where(CHOSEN, inputs, -100)):
        return "the corrupted input at the chosen positions"
    return "wrong values"


def _untouched(call: Callable[..., Any]) -> str:
    inputs, _ = _bert(call)
    return OK if torch.equal(inputs[~CHOSEN], IDS[~CHOSEN]) else "some tokens that were not chosen changed"


def _split(call: Callable[..., Any]) -> tuple:
    inputs, _ = _bert(call)
    x, orig = inputs[CHOSEN], IDS[CHOSEN]
    fractions = ((x == MASK_ID).float().mean(), ((x != MASK_ID) & (x != orig)).float().mean(),
                 (x == orig).float().mean())
    # Rounded to 0.05: with 6200 chosen tokens a fraction's std is below 0.006.
    return tuple(round(float(f) * 20) / 20 for f in fractions)


def _split_judge(got: tuple, want: tuple) -> str | None:
    if got == want:
        return None
    return (f"of the chosen tokens about {got[0]:.0%} became [MASK], {got[1]:.0%} a random word and "
            f"{got[2]:.0%} stayed unchanged; expected {want[0]:.0%} / {want[1]:.0%} / {want[2]:.0%}")


def _ordinary(call: Callable[..., Any]) -> str:
    inputs, _ = _bert(call)
    replaced = CHOSEN & (inputs != MASK_ID) & (inputs != IDS)
    drawn = inputs[replaced]
    return OK if not torch.isin(drawn, torch.tensor(SPECIAL)).any() else "special tokens among the random words"


def _independent(call: Callable[..., Any]) -> str:
    inputs, _ = _bert(call)
    fate = torch.where(inputs == MASK_ID, 0, torch.where(inputs == IDS, 2, 1))   # (B, L)
    same = [bool((fate[b][CHOSEN[b]] == fate[b][CHOSEN[b]][0]).all()) for b in range(len(IDS))]
    # Independent draws: a row with about 16 chosen tokens shares one outcome with probability ~0.03.
    return OK if sum(same) < len(same) / 2 else "all chosen tokens of a sequence share one outcome"


def _bert_generator(call: Callable[..., Any]) -> str:
    a, b, c = _bert(call, 20), _bert(call, 20), _bert(call, 21)
    if not (torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])):
        return "the same seed gave different results"
    return "different seeds gave the same result" if torch.equal(a[0], c[0]) else OK


def check_bert_mask(r: Reporter) -> None:
    r.observe("shapes and dtypes (B=3, L=8)", _bert_shapes,
              lambda got, want: None if got == want else f"expected (inputs, targets) as {want}, got {got}")
    r.observe("targets: the original word where chosen, -100 elsewhere", _targets, _verdict("targets"))
    r.observe("tokens that were not chosen stay as they are", _untouched, _verdict("inputs"))
    r.observe("80% [MASK], 10% random word, 10% unchanged", _split, _split_judge)
    r.observe("random words are ordinary words", _ordinary, _verdict("inputs"))
    r.observe("each chosen token draws its own outcome", _independent, _verdict("inputs"))
    r.observe("uses the generator", _bert_generator, _verdict("generator"))
