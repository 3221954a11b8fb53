"""Checkers and typical mistakes for the exercises on methods without negatives: ema_update,
vicreg_variance and vicreg_covariance (03), dino_teacher and update_center (06)."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from sslkit.exercises.core import Mistake, Reporter, describe_mismatch, rand, variant


# ---- ema_update ----------------------------------------------------------------------------------
def _nets(seed: int) -> tuple[nn.Module, nn.Module]:
    """(target, online): two small networks with different, seeded weights that require grad."""
    g = torch.Generator().manual_seed(seed)
    pair = []
    for _ in range(2):
        net = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))
        with torch.no_grad():
            for p in net.parameters():
                p.copy_(torch.randn(p.shape, generator=g))
        pair.append(net)
    return pair[0], pair[1]


def _ema(target, online, momentum, *, swapped=False, which="target", in_place=True, ignore_m=False, no_grad=True):
    m = 1.0 - momentum if swapped else (0.0 if ignore_m else momentum)
    moving, other = (target, online) if which == "target" else (online, target)
    with torch.no_grad() if no_grad else torch.enable_grad():
        for p_t, p_o in zip(moving.parameters(), other.parameters()):
            if in_place:
                p_t.mul_(m).add_(p_o, alpha=1 - m)
            else:
                p_t = m * p_t + (1 - m) * p_o  # a new tensor; the network keeps its old one


EMA_MISTAKES = {
    "momentum swapped": Mistake(
        "The momentum is the share the target *keeps* of its own value: with m close to 1 the target moves "
        "only a little towards the online network at each step.", variant(_ema, swapped=True)),
    "online network updated": Mistake(
        "Only the target moves. The online network is trained by the optimiser and must stay as it is.",
        variant(_ema, which="online")),
    "not in place": Mistake(
        "The target network's own parameters have to change: write the new values into them, rather than "
        "computing new tensors that nothing keeps.", variant(_ema, in_place=False)),
    "momentum ignored": Mistake(
        "The target follows the online network slowly, keeping a share m of its old value; it does not "
        "become a copy of the online network.", variant(_ema, ignore_m=True)),
    "gradient tracking on": Mistake(
        "The target is not trained by gradients, so its update must not be recorded by autograd: do the "
        "update with gradient tracking switched off.", variant(_ema, no_grad=False)),
}


def _ema_observe(momentum: float, seed: int) -> Callable[[Callable[..., Any]], Any]:
    def observe(call: Callable[..., Any]) -> Any:
        target, online = _nets(seed)
        call(target, online, momentum)
        history = any(p.grad_fn is not None for p in target.parameters())
        return (tuple(p.detach().clone() for p in target.parameters()),
                tuple(p.detach().clone() for p in online.parameters()), "history" if history else "no history")
    return observe


def _ema_judge(got: Any, want: Any) -> str | None:
    if not _all_close(got[1], want[1]):
        return "the online network changed"
    for i, (g, w) in enumerate(zip(got[0], want[0])):
        problem = describe_mismatch(g, w, what=f"target parameter #{i + 1}", atol=1e-6)
        if problem:
            return problem
    if got[2] == "history":
        return "the target parameters carry an autograd history"
    return None


def _all_close(a: tuple, b: tuple) -> bool:
    return len(a) == len(b) and all(describe_mismatch(x, y, atol=1e-6) is None for x, y in zip(a, b))


def check_ema_update(r: Reporter) -> None:
    for i, m in enumerate((0.9, 0.0, 1.0, 0.996)):
        r.observe(f"momentum={m}", _ema_observe(m, seed=50 + i), _ema_judge)


# ---- vicreg_variance -----------------------------------------------------------------------------
def _variance(z, gamma=1.0, eps=1e-4, *, hinge=True, root=True, dim=0, use_eps=True, unbiased=True,
              reduce="mean"):
    var = z.var(dim=dim, unbiased=unbiased)
    spread = torch.sqrt(var + (eps if use_eps else 0.0)) if root else var + eps
    h = F.relu(gamma - spread) if hinge else gamma - spread
    return h.mean() if reduce == "mean" else h.sum()


VARIANCE_MISTAKES = {
    "no hinge": Mistake(
        "The variance term is a hinge: a dimension whose spread is already above gamma contributes nothing "
        "(it is not rewarded for spreading further).", variant(_variance, hinge=False)),
    "variance instead of std": Mistake(
        "The hinge acts on the standard deviation (the square root of the variance), as in the paper.",
        variant(_variance, root=False)),
    "spread across dimensions": Mistake(
        "The spread is measured per embedding dimension, across the samples of the batch.",
        variant(_variance, dim=1)),
    "eps missing": Mistake(
        "The small eps inside the square root keeps it, and its gradient, finite when a dimension has "
        "collapsed to a constant.", variant(_variance, use_eps=False)),
    "biased variance": Mistake("VICReg uses the unbiased variance over the batch (dividing by N - 1).",
                               variant(_variance, unbiased=False)),
    "sum over dimensions": Mistake("Average the hinge over the D dimensions rather than summing it.",
                                   variant(_variance, reduce="sum")),
}


def _collapsed(seed: int) -> torch.Tensor:
    z = rand(12, 6, seed=seed)
    z[:, :2] = 0.5  # two dimensions collapsed to a constant
    return z


def check_vicreg_variance(r: Reporter) -> None:
    scales = torch.tensor([0.2, 0.5, 0.8, 1.5, 2.0, 3.0, 0.1, 1.2])  # some dimensions above gamma = 1
    r.values("mixed spreads (N=16, D=8)", rand(16, 8, seed=60) * scales, what="variance term")
    r.values("two collapsed dimensions", _collapsed(61), what="variance term")
    r.values("gamma=2, eps=0.01", rand(10, 5, seed=62), 2.0, 0.01, what="variance term")
    r.values("float64 input keeps float64", rand(8, 4, seed=63, dtype=torch.float64), what="variance term")
    r.gradients("differentiable with the right gradients", rand(12, 6, seed=64) * scales[:6], wrt=(0,))


# ---- vicreg_covariance ---------------------------------------------------------------------------
def _covariance(z, *, diag=False, centre=True, unbiased=True, per_entry=False, correlation=False):
    n, d = z.shape
    zc = z - z.mean(0) if centre else z
    if correlation:
        zc = zc / zc.std(0)
    cov = zc.T @ zc / (n - 1 if unbiased else n)
    sq = cov.pow(2)
    total = sq.sum() if diag else sq.sum() - torch.diagonal(sq).sum()
    return total / (d * (d - 1)) if per_entry else total / d


COVARIANCE_MISTAKES = {
    "diagonal included": Mistake(
        "Only the off-diagonal covariances are penalised; the diagonal holds each dimension's variance, "
        "which the variance term looks after.", variant(_covariance, diag=True)),
    "not centred": Mistake("A covariance is computed from centred values: subtract each dimension's batch "
                           "mean first.", variant(_covariance, centre=False)),
    "biased covariance": Mistake("VICReg uses the unbiased covariance over the batch (dividing by N - 1).",
                                 variant(_covariance, unbiased=False)),
    "mean over the entries": Mistake(
        "The paper sums the squared off-diagonal covariances and divides by D, not by the number of "
        "off-diagonal entries.", variant(_covariance, per_entry=True)),
    "correlation instead of covariance": Mistake(
        "This term uses the covariance itself: the dimensions are not standardised first (standardising "
        "is what Barlow Twins does).", variant(_covariance, correlation=True)),
}


def check_vicreg_covariance(r: Reporter) -> None:
    mix = rand(6, 6, seed=70)
    r.values("correlated dimensions, mean far from 0 (N=32, D=6)", rand(32, 6, seed=71) @ mix + 3.0,
             what="covariance term", atol=1e-4)
    r.values("small batch (N=5, D=3)", 2 * rand(5, 3, seed=72), what="covariance term")
    r.values("float64 input keeps float64", rand(8, 4, seed=73, dtype=torch.float64), what="covariance term")
    r.gradients("differentiable with the right gradients", rand(10, 4, seed=74) @ rand(4, 4, seed=75),
                wrt=(0,), atol=1e-4)


# ---- dino_teacher --------------------------------------------------------------------------------
def _teacher(logits, center, temperature=0.04, *, centring="sub", temp="div", dim=-1, detach=True):
    t = logits.detach() if detach else logits
    t = {"sub": t - center, "add": t + center, "none": t, "batch": t - t.mean(0)}[centring]
    t = {"div": t / temperature, "none": t, "mul": t * temperature}[temp]
    return F.softmax(t, dim=dim)


DINO_TEACHER_MISTAKES = {
    "no centring": Mistake(
        "Centring subtracts the running centre from the teacher's outputs before the softmax; it keeps one "
        "output dimension from winning for every image.", variant(_teacher, centring="none")),
    "centre added": Mistake("The centre is subtracted from the teacher's outputs, not added.",
                            variant(_teacher, centring="add")),
    "batch mean as centre": Mistake(
        "Centre with the running centre you are given (an average over many past batches), not with the "
        "mean of this batch.", variant(_teacher, centring="batch")),
    "no sharpening": Mistake("Sharpening divides the centred outputs by the low teacher temperature before "
                             "the softmax.", variant(_teacher, temp="none")),
    "temperature multiplies": Mistake("The temperature divides the logits (a low temperature sharpens); here "
                                      "it multiplies them.", variant(_teacher, temp="mul")),
    "softmax over the batch": Mistake(
        "Each image's targets are a distribution over the K outputs: the softmax runs over the output "
        "dimension, not over the images of the batch.", variant(_teacher, dim=0)),
    "gradient into the teacher": Mistake(
        "The teacher's outputs are targets: no gradient may flow back into them.",
        variant(_teacher, detach=False)),
}


def _with_grad(logits: torch.Tensor, *rest: Any) -> Callable[[Callable[..., Any]], Any]:
    def observe(call: Callable[..., Any]) -> Any:
        out = call(logits.detach().clone().requires_grad_(True), *rest)
        return "carries a gradient" if isinstance(out, torch.Tensor) and out.requires_grad else "no gradient"
    return observe


def _no_grad_judge(what: str) -> Callable[[Any, Any], str | None]:
    return lambda got, want: None if got == want else f"{what} carries a gradient back to the teacher's logits"


def check_dino_teacher(r: Reporter) -> None:
    r.values("random logits (B=6, K=5, T=0.5)", rand(6, 5, seed=80), 0.5 * rand(5, seed=81), 0.5,
             what="targets")
    r.values("sharp (B=4, K=8, T=0.1)", rand(4, 8, seed=82), rand(8, seed=83), 0.1, what="targets")
    r.values("float64 input keeps float64", rand(3, 4, seed=84, dtype=torch.float64),
             rand(4, seed=85, dtype=torch.float64), 0.3, what="targets")
    r.observe("no gradient into the teacher", _with_grad(rand(5, 4, seed=86), rand(4, seed=87), 0.2),
              _no_grad_judge("the output"))


# ---- update_center -------------------------------------------------------------------------------
def _center(center, logits, momentum=0.9, *, swapped=False, ema=True, reduce="mean", dim=0, in_place=False,
            no_grad=True):
    with torch.no_grad() if no_grad else torch.enable_grad():
        batch = logits.mean(dim) if reduce == "mean" else logits.sum(dim)
        m = 1 - momentum if swapped else momentum
        if not ema:
            return batch
        if in_place:
            return center.mul_(m).add_(batch, alpha=1 - m)
        return m * center + (1 - m) * batch


CENTER_MISTAKES = {
    "momentum swapped": Mistake("The momentum is the share of the old centre that is kept; the new batch "
                                "contributes only 1 - momentum.", variant(_center, swapped=True)),
    "no moving average": Mistake("The centre is a running average over batches: blend the old centre with "
                                 "this batch's mean rather than replacing it.", variant(_center, ema=False)),
    "sum over the batch": Mistake("Use the batch *mean* of the teacher's outputs, so that the centre does not "
                                  "depend on the batch size.", variant(_center, reduce="sum")),
    "mean over the outputs": Mistake("The centre has one entry per output dimension: average the teacher's "
                                     "outputs over the images of the batch.", variant(_center, dim=1)),
    "changes the centre in place": Mistake("Return the new centre and leave the tensor you were given as it was.",
                                           variant(_center, in_place=True)),
    "gradient into the centre": Mistake("The centre is a running statistic, not part of the computation graph: "
                                        "no gradient should reach it.", variant(_center, no_grad=False)),
}


def check_update_center(r: Reporter) -> None:
    r.values("random (B=6, K=5, momentum=0.9)", rand(5, seed=90), rand(6, 5, seed=91), 0.9, what="centre")
    r.values("momentum=0.5", rand(4, seed=92), 3 + rand(8, 4, seed=93), 0.5, what="centre")
    r.values("momentum=0 gives the batch mean (B=3, K=7)", rand(7, seed=94), rand(3, 7, seed=95), 0.0,
             what="centre")

    def observe(call: Callable[..., Any]) -> Any:
        out = call(rand(4, seed=96), rand(6, 4, seed=97).requires_grad_(True), 0.9)
        return "carries a gradient" if isinstance(out, torch.Tensor) and out.requires_grad else "no gradient"
    r.observe("no gradient into the centre", observe, _no_grad_judge("the new centre"))
