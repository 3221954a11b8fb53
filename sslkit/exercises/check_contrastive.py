"""Checkers and typical mistakes for the contrastive exercises: nt_xent and moco_loss (02),
alignment and uniformity (06)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from sslkit.exercises.core import Mistake, Reporter, rand, variant


# ---- nt_xent -------------------------------------------------------------------------------------
def _nt_xent(z1, z2, temperature=0.5, *, normalise=True, temp="div", diag="-inf", cross_only=False,
             one_dir=False, reduce="mean"):
    """NT-Xent with one deliberate deviation (the options name it)."""
    n = z1.shape[0]
    z = torch.cat([z1, z2])
    z = F.normalize(z, dim=1) if normalise else z
    s = z @ z.T
    s = {"div": s / temperature, "none": s, "mul": s * temperature}[temp]
    eye = torch.eye(2 * n, dtype=torch.bool)
    if diag != "kept":
        s = s.masked_fill(eye, float("-inf") if diag == "-inf" else 0.0)
    targets = torch.cat([torch.arange(n, 2 * n), torch.arange(n)])
    if cross_only:
        ar = torch.arange(n)
        return 0.5 * (F.cross_entropy(s[:n, n:], ar) + F.cross_entropy(s[n:, :n], ar))
    if one_dir:
        s, targets = s[:n], targets[:n]
    return F.cross_entropy(s, targets, reduction=reduce)


NT_XENT_MISTAKES = {
    "not normalised": Mistake(
        "NT-Xent compares directions, not lengths: its similarity is the cosine, so the embeddings go "
        "onto the unit sphere before any dot product.", variant(_nt_xent, normalise=False)),
    "no temperature": Mistake(
        "The temperature is missing. The similarities are divided by it before the softmax; it sets how "
        "peaked the softmax is.", variant(_nt_xent, temp="none")),
    "temperature multiplies": Mistake(
        "The temperature divides the similarities (a small temperature makes the softmax sharper); here "
        "it multiplies them.", variant(_nt_xent, temp="mul")),
    "self-similarity kept": Mistake(
        "A view's similarity with itself is always the largest, so it must not be a candidate of the "
        "softmax at all: leave it out of every row.", variant(_nt_xent, diag="kept")),
    "self-similarity set to 0": Mistake(
        "Setting a view's self-similarity to 0 still leaves it in the softmax as a candidate, with weight "
        "e^0, which is 1; it has to be excluded completely, so that it gets probability exactly zero.",
        variant(_nt_xent, diag="0")),
    "negatives from one view": Mistake(
        "An anchor's negatives are all 2N - 2 other views of the batch, from both augmentations, not only "
        "the N - 1 other views of the opposite augmentation.", variant(_nt_xent, cross_only=True)),
    "anchors from one view": Mistake(
        "Every one of the 2N views is an anchor: average over the anchors of both augmentations, not only "
        "over the first N.", variant(_nt_xent, one_dir=True)),
    "sum instead of mean": Mistake(
        "The loss is the mean over the 2N anchors, not their sum (your value is exactly 2N times too large).",
        variant(_nt_xent, reduce="sum")),
}


def check_nt_xent(r: Reporter) -> None:
    r.values("hand-made pairs (N=2, D=2)", torch.tensor([[1.0, 0.0], [0.0, 1.0]]),
             torch.tensor([[0.8, 0.6], [-0.6, 0.8]]), 0.5, what="loss")
    r.values("random embeddings (N=8, D=16, T=0.5)", rand(8, 16, seed=1), rand(8, 16, seed=2), 0.5, what="loss")
    r.values("low temperature (N=6, T=0.1)", rand(6, 4, seed=3), rand(6, 4, seed=4), 0.1, what="loss")
    r.values("long unnormalised vectors (N=5)", 10 * rand(5, 8, seed=5), 3 * rand(5, 8, seed=6), 0.5, what="loss")
    r.values("float64 input keeps float64", rand(4, 8, seed=7, dtype=torch.float64),
             rand(4, 8, seed=8, dtype=torch.float64), 0.5, what="loss")
    r.gradients("differentiable with the right gradients", rand(6, 5, seed=9), rand(6, 5, seed=10), 0.5,
                wrt=(0, 1))


# ---- moco_loss -----------------------------------------------------------------------------------
def _moco(q, k, queue, temperature=0.2, *, normalise=True, temp="div", pos_last=False, in_batch=False,
          pos_in_softmax=True, reduce="mean"):
    if normalise:
        q, k, queue = F.normalize(q, dim=1), F.normalize(k, dim=1), F.normalize(queue, dim=1)
    t = temperature if temp == "div" else 1.0
    if in_batch:
        return F.cross_entropy(q @ k.T / t, torch.arange(len(q)), reduction=reduce)
    pos = (q * k).sum(1, keepdim=True) / t                                 # (N, 1)
    neg = q @ queue.T / t                                                  # (N, Q)
    if not pos_in_softmax:
        per = -pos[:, 0] + torch.logsumexp(neg, dim=1)
        return per.mean() if reduce == "mean" else per.sum()
    logits = torch.cat([neg, pos] if pos_last else [pos, neg], dim=1)
    return F.cross_entropy(logits, torch.zeros(len(q), dtype=torch.long), reduction=reduce)


MOCO_MISTAKES = {
    "not normalised": Mistake(
        "MoCo's similarities are cosines: queries, keys and queued keys all go onto the unit sphere first.",
        variant(_moco, normalise=False)),
    "no temperature": Mistake(
        "The temperature is missing: the similarities are divided by it before the softmax.",
        variant(_moco, temp="none")),
    "positive in the wrong column": Mistake(
        "The target is the index of the positive among each query's logits; the positive's logit has to "
        "sit where the target points (MoCo puts it first, so every target is 0).", variant(_moco, pos_last=True)),
    "in-batch negatives": Mistake(
        "MoCo's negatives are the keys stored in the queue from earlier batches, not the other keys of the "
        "current batch; that is what lets it use many negatives with a small batch.",
        variant(_moco, in_batch=True)),
    "positive left out of the softmax": Mistake(
        "The positive is one of the candidates of the softmax: InfoNCE's denominator sums over the positive "
        "and all the negatives.", variant(_moco, pos_in_softmax=False)),
    "sum instead of mean": Mistake(
        "The loss is the mean over the N queries, not their sum.", variant(_moco, reduce="sum")),
}


def check_moco_loss(r: Reporter) -> None:
    e = torch.eye(3)
    r.values("hand-made (N=2, queue of 3, T=0.5)", torch.stack([e[0], e[1]]),
             torch.tensor([[0.6, 0.8, 0.0], [0.0, 0.6, 0.8]]), torch.stack([e[2], -e[0], e[1] + e[2]]), 0.5,
             what="loss")
    r.values("random (N=8, D=16, queue of 32, T=0.2)", rand(8, 16, seed=31), rand(8, 16, seed=32),
             rand(32, 16, seed=33), 0.2, what="loss")
    r.values("long unnormalised vectors, T=0.07", 5 * rand(4, 6, seed=34), 0.3 * rand(4, 6, seed=35),
             2 * rand(10, 6, seed=36), 0.07, what="loss")
    r.values("float64 input keeps float64", rand(3, 4, seed=37, dtype=torch.float64),
             rand(3, 4, seed=38, dtype=torch.float64), rand(5, 4, seed=39, dtype=torch.float64), 0.2, what="loss")
    r.gradients("differentiable with the right gradients for q", rand(6, 5, seed=40), rand(6, 5, seed=41),
                rand(12, 5, seed=42), 0.2, wrt=(0,))


# ---- alignment / uniformity ----------------------------------------------------------------------
def _alignment(z1, z2, alpha=2.0, *, normalise=True, power="alpha", reduce="mean", cosine=False):
    if normalise:
        z1, z2 = F.normalize(z1, dim=1), F.normalize(z2, dim=1)
    if cosine:
        d = 1 - (z1 * z2).sum(1)
    else:
        d = (z1 - z2).norm(dim=1)
        d = {"alpha": d.pow(alpha), "two": d.pow(2), "none": d}[power]
    return d.mean() if reduce == "mean" else d.sum()


ALIGNMENT_MISTAKES = {
    "not normalised": Mistake("Alignment is measured on the unit sphere: normalise both embeddings before "
                              "taking distances.", variant(_alignment, normalise=False)),
    "no power": Mistake("Each pair's distance is raised to the power alpha (2 by default) before averaging.",
                        variant(_alignment, power="none")),
    "alpha ignored": Mistake("Use the exponent alpha you are given; it is not always 2.",
                             variant(_alignment, power="two")),
    "sum instead of mean": Mistake("Alignment is an average over the positive pairs, not a sum.",
                                   variant(_alignment, reduce="sum")),
    "1 - cosine": Mistake("Alignment uses the distance between the unit vectors; 1 - cos is only half of the "
                          "squared distance.", variant(_alignment, cosine=True)),
}


def check_alignment(r: Reporter) -> None:
    z = rand(5, 3, seed=20)
    r.values("identical pairs give 0", z, z.clone(), what="alignment")
    r.values("random pairs (N=16, D=8)", rand(16, 8, seed=21), 5 * rand(16, 8, seed=22), what="alignment")
    r.values("opposite unit vectors give 4", torch.eye(3), -torch.eye(3), what="alignment")
    r.values("alpha=1", rand(10, 4, seed=43), rand(10, 4, seed=44), 1.0, what="alignment")
    r.values("alpha=3", rand(10, 4, seed=45), rand(10, 4, seed=46), 3.0, what="alignment")
    r.gradients("differentiable with the right gradients", rand(6, 4, seed=23), rand(6, 4, seed=24), wrt=(0, 1))


def _uniformity(z, t=2.0, *, normalise=True, pairs="distinct", log=True, square=True, use_t=True):
    z = F.normalize(z, dim=1) if normalise else z
    d = torch.pdist(z) if pairs == "distinct" else torch.cdist(z, z).flatten()
    d = d.pow(2) if square else d
    v = d.mul(-(t if use_t else 2.0)).exp().mean()
    return v.log() if log else v


UNIFORMITY_MISTAKES = {
    "not normalised": Mistake("Uniformity is measured on the unit sphere: normalise the embeddings first.",
                              variant(_uniformity, normalise=False)),
    "self-pairs included": Mistake(
        "Only pairs of *different* points count. A point's zero distance to itself adds a constant to the "
        "mean that hides the spread.", variant(_uniformity, pairs="all")),
    "no log": Mistake("Uniformity is the log of the mean Gaussian potential; the log is missing.",
                      variant(_uniformity, log=False)),
    "distance not squared": Mistake("The Gaussian potential uses the *squared* distance between the points.",
                                    variant(_uniformity, square=False)),
    "t ignored": Mistake("Use the t you are given; it is not always 2.", variant(_uniformity, use_t=False)),
}


def check_uniformity(r: Reporter) -> None:
    r.values("random embeddings (N=32, D=8)", rand(32, 8, seed=25), what="uniformity", atol=1e-4)
    r.values("collapsed embeddings give 0", rand(1, 8, seed=26).expand(10, 8).contiguous(), what="uniformity",
             atol=1e-4)
    r.values("long unnormalised vectors", 7 * rand(12, 3, seed=27), what="uniformity", atol=1e-4)
    r.values("t=1", rand(16, 4, seed=47), 1.0, what="uniformity", atol=1e-4)
    r.gradients("differentiable with the right gradients", rand(10, 4, seed=28), atol=1e-4)
