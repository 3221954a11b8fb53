"""Checkers for the loss exercises: nt_xent (02), masked_mse (04), alignment and uniformity (06)."""
from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from sslkit.exercises import reference as ref
from sslkit.exercises.core import Reporter, gradient_case


def _rand(*shape: int, seed: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=dtype)


# ---- nt_xent -------------------------------------------------------------------------------------
def _nt_xent_mistakes(z1: torch.Tensor, z2: torch.Tensor, t: float) -> dict[str, torch.Tensor]:
    n = z1.shape[0]
    targets = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)])

    def loss(z: torch.Tensor, temp: float, exclude_self: bool = True) -> torch.Tensor:
        sim = z @ z.T / temp
        if exclude_self:
            sim = sim.masked_fill(torch.eye(2 * n, dtype=torch.bool), float("-inf"))
        return F.cross_entropy(sim, targets)

    zn = F.normalize(torch.cat([z1, z2]), dim=1)
    z1n, z2n = F.normalize(z1, dim=1), F.normalize(z2, dim=1)
    cross = z1n @ z2n.T / t  # (N, N) only the other view as candidates
    one_dir = (zn @ zn.T / t).masked_fill(torch.eye(2 * n, dtype=torch.bool), float("-inf"))[:n]
    return {
        "the embeddings are not L2-normalised: use F.normalize(z, dim=1) before the dot products":
            loss(torch.cat([z1, z2]), t),
        "the temperature is missing or applied the wrong way: divide the cosine similarities by it":
            loss(zn, 1.0),
        "(temperature multiplies instead of divides)": loss(zn, 1.0 / t),
        "a view's similarity with itself is still in the softmax: mask the diagonal with -inf":
            loss(zn, t, exclude_self=False),
        "only the other view's embeddings are used as negatives; NT-Xent compares each view with "
        "all 2N - 1 others (both views)": 0.5 * (F.cross_entropy(cross, torch.arange(n))
                                                  + F.cross_entropy(cross.T, torch.arange(n))),
        "only the first view's rows are averaged; average the loss over all 2N anchors":
            F.cross_entropy(one_dir, targets[:n]),
    }


def check_nt_xent(fn: Callable[..., torch.Tensor], r: Reporter) -> None:
    cases = {
        "hand-made pairs (N=2, D=2)": (torch.tensor([[1.0, 0.0], [0.0, 1.0]]),
                                       torch.tensor([[0.8, 0.6], [-0.6, 0.8]]), 0.5),
        "random embeddings (N=8, D=16, T=0.5)": (_rand(8, 16, seed=1), _rand(8, 16, seed=2), 0.5),
        "low temperature (T=0.1)": (_rand(6, 4, seed=3), _rand(6, 4, seed=4), 0.1),
        "long unnormalised vectors": (10 * _rand(5, 8, seed=5), 3 * _rand(5, 8, seed=6), 0.5),
    }
    for name, (z1, z2, t) in cases.items():
        ok, out = r.call(name, fn, z1, z2, t)
        if ok:
            r.compare(name, out, ref.nt_xent(z1, z2, t), what="loss",
                      mistakes=_nt_xent_mistakes(z1, z2, t))
    z1, z2 = _rand(4, 8, seed=7, dtype=torch.float64), _rand(4, 8, seed=8, dtype=torch.float64)
    ok, out = r.call("float64 input keeps float64", fn, z1, z2, 0.5)
    if ok:
        r.compare("float64 input keeps float64", out, ref.nt_xent(z1, z2, 0.5), what="loss")
    gradient_case(r, "differentiable with the right gradients", fn, ref.nt_xent,
                  [_rand(6, 5, seed=9), _rand(6, 5, seed=10)], 0.5)


# ---- masked_mse ----------------------------------------------------------------------------------
def _mse_mistakes(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, norm_pix: bool
                  ) -> dict[str, torch.Tensor]:
    per_patch = (pred - target).pow(2).mean(-1)
    m = mask.float()
    out = {
        "the loss is averaged over ALL patches; MAE averages only over the masked ones":
            per_patch.mean(),
        "the mask is used the wrong way round: mask == True marks the *removed* patches, "
        "which are the ones to reconstruct": (per_patch * (1 - m)).sum() / (1 - m).sum(),
        "squared errors are summed over the patch's pixels; take their mean (per-pixel MSE)":
            ((pred - target).pow(2).sum(-1) * m).sum() / m.sum(),
    }
    if norm_pix:
        out["norm_pix=True should normalise each *target* patch by its own mean and std "
            "(std from target.var(dim=-1) + 1e-6)"] = ref.masked_mse(pred, target, mask, False)
    return out


def check_masked_mse(fn: Callable[..., torch.Tensor], r: Reporter) -> None:
    g = torch.Generator().manual_seed(11)
    mask = torch.rand(3, 10, generator=g) < 0.6
    mask[:, 0] = True  # at least one masked patch per image
    cases = {
        "half the patches masked": (_rand(2, 4, 6, seed=12), _rand(2, 4, 6, seed=13),
                                    torch.tensor([[True, False, True, False], [False, True, True, False]]),
                                    False),
        "random mask (B=3, N=10, P=12)": (_rand(3, 10, 12, seed=14), _rand(3, 10, 12, seed=15), mask, False),
        "norm_pix=True": (_rand(3, 10, 12, seed=16), 2 + 3 * _rand(3, 10, 12, seed=17), mask, True),
    }
    for name, (pred, target, m, norm_pix) in cases.items():
        ok, out = r.call(name, fn, pred, target, m, norm_pix=norm_pix)
        if ok:
            r.compare(name, out, ref.masked_mse(pred, target, m, norm_pix), what="loss",
                      mistakes=_mse_mistakes(pred, target, m, norm_pix))
    gradient_case(r, "differentiable with the right gradients", fn, ref.masked_mse,
                  [_rand(2, 5, 3, seed=18), _rand(2, 5, 3, seed=19)], mask[:2, :5])


# ---- alignment / uniformity ----------------------------------------------------------------------
def check_alignment(fn: Callable[..., torch.Tensor], r: Reporter) -> None:
    cases = {
        "identical pairs give 0": (_rand(5, 3, seed=20), None),
        "random pairs (N=16, D=8)": (_rand(16, 8, seed=21), 5 * _rand(16, 8, seed=22)),
        "opposite unit vectors give 4": (torch.eye(3), -torch.eye(3)),
    }
    for name, (z1, z2) in cases.items():
        z2 = z1.clone() if z2 is None else z2
        ok, out = r.call(name, fn, z1, z2)
        if ok:
            mistakes = {"normalise both embeddings onto the unit sphere first (F.normalize)":
                        (z1 - z2).norm(dim=1).pow(2).mean(),
                        "alignment uses the *squared* distance (alpha=2), not the distance":
                        (F.normalize(z1, dim=1) - F.normalize(z2, dim=1)).norm(dim=1).mean()}
            r.compare(name, out, ref.alignment(z1, z2), what="alignment", mistakes=mistakes)
    gradient_case(r, "differentiable with the right gradients", fn, ref.alignment,
                  [_rand(6, 4, seed=23), _rand(6, 4, seed=24)])


def check_uniformity(fn: Callable[..., torch.Tensor], r: Reporter) -> None:
    cases = {
        "random embeddings (N=32, D=8)": _rand(32, 8, seed=25),
        "collapsed embeddings give 0": _rand(1, 8, seed=26).expand(10, 8).contiguous(),
        "long unnormalised vectors": 7 * _rand(12, 3, seed=27),
    }
    for name, z in cases.items():
        ok, out = r.call(name, fn, z)
        if ok:
            zn = F.normalize(z, dim=1)
            full = torch.cdist(zn, zn).pow(2)
            mistakes = {
                "normalise the embeddings first (F.normalize)":
                    torch.pdist(z).pow(2).mul(-2).exp().mean().log(),
                "the i == j pairs are included; use distinct pairs only (torch.pdist)":
                    full.mul(-2).exp().mean().log(),
                "the log is missing: uniformity = log(mean(exp(-t * d^2)))":
                    torch.pdist(zn).pow(2).mul(-2).exp().mean(),
            }
            r.compare(name, out, ref.uniformity(z), what="uniformity", mistakes=mistakes, atol=1e-4)
    gradient_case(r, "differentiable with the right gradients", fn, ref.uniformity,
                  [_rand(10, 4, seed=28)], atol=1e-4)
