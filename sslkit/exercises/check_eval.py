"""Checkers and typical mistakes for the evaluation exercises: knn_predict and stratified_subset
(05), pca (06)."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from sslkit.exercises.core import Mistake, Reporter, describe_mismatch, variant

OK = "ok"


# ---- knn_predict ---------------------------------------------------------------------------------
def _knn(train_feats, train_labels, test_feats, num_classes, k=20, temperature=0.07, *, sim="cos",
         weights="exp", skip_first=False, all_vote=False):
    if sim == "cos":
        s = F.normalize(test_feats, dim=1) @ F.normalize(train_feats, dim=1).T
    elif sim == "dot":
        s = test_feats @ train_feats.T
    else:
        s = -torch.cdist(test_feats, train_feats)
    n = train_feats.shape[0]
    k = n if all_vote else min(k, n)
    top, idx = s.topk(min(k + 1, n) if skip_first else k, dim=1)
    if skip_first:
        top, idx = top[:, 1:], idx[:, 1:]
    w = {"exp": (top / temperature).exp(), "one": torch.ones_like(top), "no_t": top.exp()}[weights]
    votes = torch.zeros(len(test_feats), num_classes, dtype=w.dtype).scatter_add_(1, train_labels[idx], w)
    return votes.argmax(dim=1)


KNN_MISTAKES = {
    "dot product": Mistake(
        "kNN here uses cosine similarity, which compares directions only: a long vector must not win just "
        "because it is long. Put the features onto the unit sphere first.", variant(_knn, sim="dot")),
    "Euclidean distance": Mistake(
        "The neighbours are the most *cosine*-similar training items (directions), not the closest ones in "
        "Euclidean distance.", variant(_knn, sim="euclid")),
    "unweighted votes": Mistake(
        "Each neighbour's vote is weighted by exp(similarity / temperature), so a very similar neighbour "
        "counts more than a barely similar one.", variant(_knn, weights="one")),
    "temperature ignored": Mistake(
        "The vote weights divide the similarity by the temperature before the exponential; a low temperature "
        "lets the nearest neighbours dominate.", variant(_knn, weights="no_t")),
    "every training item votes": Mistake(
        "Only the k most similar training items vote, not the whole training set.", variant(_knn, all_vote=True)),
    "first neighbour skipped": Mistake(
        "The test items are not in the training set, so the most similar training item is a real neighbour: "
        "keep it (skip the first one only when a query can find itself).", variant(_knn, skip_first=True)),
}


def _bank(n: int, d: int, seed: int) -> torch.Tensor:
    """Random features with lengths from 0.2 to 5, so that cosine, dot product and distance disagree."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g) * torch.empty(n, 1).uniform_(0.2, 5.0, generator=g)


def check_knn_predict(r: Reporter) -> None:
    e = torch.eye(3)
    # Query along x: cosine picks the short vector along x (class 0), a raw dot product the long diagonal
    # one (class 1), Euclidean distance the short one too.
    r.values("cosine, not dot product (k=1)", torch.tensor([[0.5, 0, 0], [3.0, 3, 0]]), torch.tensor([0, 1]),
             e[:1], 2, 1, 0.07, what="predictions")
    # One very similar class-0 neighbour outweighs two less similar class-1 ones - only when weighted.
    r.values("votes weighted by exp(sim / T) (k=3, T=0.05)", torch.stack([e[0], e[0] + 0.9 * e[1], e[0] + 0.9 * e[2]]),
             torch.tensor([0, 1, 1]), e[:1], 2, 3, 0.05, what="predictions")
    for i, (n, d, c, k, t) in enumerate(((60, 8, 4, 5, 0.1), (40, 6, 3, 3, 0.5), (80, 4, 5, 10, 0.07))):
        r.values(f"random bank (N={n}, 30 queries, {c} classes, k={k}, T={t})", _bank(n, d, 120 + i),
                 torch.arange(n) % c, _bank(30, d, 130 + i), c, k, t, what="predictions")
    r.values("k larger than the bank votes with all of it", _bank(5, 4, 140), torch.tensor([0, 1, 1, 2, 2]),
             _bank(6, 4, 141), 3, 20, 0.1, what="predictions")


# ---- stratified_subset ---------------------------------------------------------------------------
def _stratified(labels, per_class, generator=None, *, first=False, replacement=False, stratified=True,
                use_generator=True):
    g = generator if use_generator else None
    if not stratified:
        n = len(labels.unique()) * per_class
        return torch.randperm(len(labels), generator=g)[:n]
    picks = []
    for c in labels.unique():
        members = (labels == c).nonzero().flatten()
        if first:
            picks.append(members[:per_class])
        elif replacement:
            picks.append(members[torch.randint(len(members), (per_class,), generator=g)])
        else:
            picks.append(members[torch.randperm(len(members), generator=g)[:per_class]])
    return torch.cat(picks)


STRATIFIED_MISTAKES = {
    "always the first items": Mistake(
        "The labelled items must be a *random* sample of each class, not its first items: the order of a "
        "dataset can mean anything (sorted by time, by source, ...).", variant(_stratified, first=True)),
    "drawn with replacement": Mistake(
        "Draw without replacement: an item picked twice is still only one labelled example.",
        variant(_stratified, replacement=True)),
    "not stratified": Mistake(
        "Draw per_class items from *every* class (stratified sampling), so that each class gets the same "
        "number of labels.", variant(_stratified, stratified=False)),
    "generator ignored": Mistake(
        "Draw all randomness from the generator you are given, so that the same seed gives the same subset.",
        variant(_stratified, use_generator=False)),
}

SIZES = (10, 12, 15, 9)                                   # items per class: unequal on purpose
LABELS = torch.cat([torch.full((n,), c) for c, n in enumerate(SIZES)])[
    torch.randperm(sum(SIZES), generator=torch.Generator().manual_seed(150))]   # (46,) shuffled


def _draw(call: Callable[..., Any], per_class: int, seed: int) -> torch.Tensor:
    out = call(LABELS, per_class, torch.Generator().manual_seed(seed))
    if not isinstance(out, torch.Tensor):
        raise TypeError(f"expected a tensor of indices, got {type(out).__name__}")
    return out


def _form(call: Callable[..., Any]) -> tuple:
    out = _draw(call, 3, 0)
    return (out.ndim, str(out.dtype), out.numel())


def _balanced(call: Callable[..., Any]) -> str:
    for seed in range(20):   # 20 draws: an unstratified draw is balanced by chance in ~4% of draws
        counts = torch.bincount(LABELS[_draw(call, 2, seed)], minlength=len(SIZES))
        if not torch.equal(counts, torch.full((len(SIZES),), 2)):
            return f"class counts {counts.tolist()}"
    return OK


def _distinct(call: Callable[..., Any]) -> str:
    for seed in range(20):
        out = _draw(call, 5, seed)
        if len(out.unique()) != len(out):
            return "an item was picked twice"
    return OK


def _random(call: Callable[..., Any]) -> str:
    firsts = torch.cat([(LABELS == c).nonzero().flatten()[:3] for c in range(len(SIZES))])
    same = [set(_draw(call, 3, seed).tolist()) == set(firsts.tolist()) for seed in range(3)]
    return "always the first items of each class" if all(same) else OK


def _seeded(call: Callable[..., Any]) -> str:
    a, b, c = (set(_draw(call, 3, s).tolist()) for s in (7, 7, 8))
    if a != b:
        return "the same seed gave different subsets"
    return "different seeds gave the same subset" if a == c else OK


def _uniform(call: Callable[..., Any]) -> str:
    counts = torch.zeros(len(LABELS))
    draws = 400
    for seed in range(draws):
        counts += torch.bincount(_draw(call, 2, 1000 + seed), minlength=len(LABELS))[:len(LABELS)]
    freq = counts / draws
    for c, n in enumerate(SIZES):
        # Each item of a class of n is picked with probability 2 / n: std <= 0.025 over 400 draws.
        if (freq[LABELS == c] - 2 / n).abs().max() > 0.12:
            return f"items of class {c} picked with frequencies {freq[LABELS == c].min():.2f}..{freq[LABELS == c].max():.2f}"
    return OK


def _verdict(what: str) -> Callable[[Any, Any], str | None]:
    return lambda got, want: None if got == want else f"{what}: {got}"


def check_stratified_subset(r: Reporter) -> None:
    r.observe("a 1-D int64 tensor of C * per_class indices", _form,
              lambda got, want: None if got == want else
              f"expected (ndim, dtype, length) {want}, got {got}")
    r.observe("per_class items of every class", _balanced, _verdict("indices"))
    r.observe("no item twice", _distinct, _verdict("indices"))
    r.observe("a random sample", _random, _verdict("indices"))
    r.observe("uses the generator", _seeded, _verdict("generator"))
    r.observe("every item of a class equally likely (400 draws)", _uniform, _verdict("frequencies"))


# ---- pca -----------------------------------------------------------------------------------------
def _pca(x, k, *, centre=True, project="centred", order="largest", coords="projection"):
    xc = x - x.mean(0, keepdim=True) if centre else x
    u, s, vh = torch.linalg.svd(xc, full_matrices=False)
    if coords == "u":
        return u[:, :k]
    directions = vh[:, :k] if coords == "columns" else (vh[:k] if order == "largest" else vh.flip(0)[:k]).T
    return (xc if project == "centred" else x) @ directions


PCA_MISTAKES = {
    "not centred": Mistake(
        "Principal directions describe the spread around the mean: centre the data before looking for them.",
        variant(_pca, centre=False)),
    "raw data projected": Mistake(
        "Project the *centred* data: the coordinates are measured from the mean.",
        variant(_pca, project="raw")),
    "smallest variance first": Mistake(
        "The principal components are ordered by the variance they explain, largest first.",
        variant(_pca, order="smallest")),
    "left singular vectors": Mistake(
        "The coordinates are the centred data projected onto the directions; the left singular vectors are "
        "those coordinates divided by each component's singular value.", variant(_pca, coords="u")),
    "columns instead of rows": Mistake(
        "In the singular value decomposition of the centred data, U S V^T, the principal directions are the "
        "columns of V, i.e. the *rows* of V^T.", variant(_pca, coords="columns")),
}


def _align_signs(z: torch.Tensor, want: torch.Tensor) -> torch.Tensor:
    """Principal directions are defined up to sign: flip columns of z to agree with want."""
    return z * torch.where((z * want).sum(0, keepdim=True) < 0, -1.0, 1.0).to(z.dtype)


def _same_up_to_sign(a: Any, b: Any) -> bool:
    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
        if a.shape != b.shape or a.ndim != 2 or a.dtype != b.dtype:
            return False
        return describe_mismatch(_align_signs(a.detach(), b), b, atol=1e-3) is None
    return not isinstance(a, torch.Tensor) and not isinstance(b, torch.Tensor) and a == b


def _pca_data(seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    basis = torch.linalg.qr(torch.randn(6, 6, generator=g))[0]
    scales = torch.tensor([5.0, 3.0, 1.0, 0.5, 0.2, 0.1])            # clear gaps between components
    return (torch.randn(200, 6, generator=g) * scales) @ basis.T + 4.0  # mean far from 0


def check_pca(r: Reporter) -> None:
    x = _pca_data(30)
    for name, k in (("2 components of 6-D data", 2), ("all 6 components", 6), ("1 component", 1)):
        def judge(got: Any, want: torch.Tensor) -> str | None:
            problem = describe_mismatch(got, want, what="projection")
            if problem is None or "shape" in problem or "dtype" in problem or "Tensor" in problem:
                return problem
            return describe_mismatch(_align_signs(got.detach(), want), want, what="projection (signs aligned)",
                                     atol=1e-3)
        r.observe(name, lambda call, k=k: call(x, k), judge, _same_up_to_sign)
