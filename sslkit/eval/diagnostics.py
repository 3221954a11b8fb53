"""Label-free diagnostics of a feature space: is it collapsing, how many directions does it use?

    feature_std(z)      ~1/sqrt(D) when healthy, 0 when every sample maps to the same point
    effective_rank(z)   RankMe (Garrido et al. 2023): 1 for collapsed features, up to min(N, D)
    alignment(z1, z2)   Wang & Isola 2020: how close two views of the same sample are (0 = identical)
    uniformity(z)       Wang & Isola 2020: how evenly features spread on the sphere (lower = more)
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from sslkit import checks


def _features(name: str, z: torch.Tensor, min_rows: int = 1) -> torch.Tensor:
    checks.tensor(name, z, ndim=2, dtypes="float")
    if len(z) < min_rows:
        raise ValueError(f"{name} needs at least {min_rows} rows; got shape {tuple(z.shape)}")
    if z.shape[1] < 1:
        raise ValueError(f"{name} needs at least one feature column; got shape {tuple(z.shape)}")
    return z.float()


def feature_std(feats: torch.Tensor) -> float:
    """Mean over dimensions of the per-dimension std of L2-normalised features.

    The collapse monitor of SimSiam (Chen & He 2021, Sec. 4.1): if the outputs collapse to a constant
    vector the std is 0; if they are spread like an isotropic Gaussian on the unit sphere it is
    about ``1/sqrt(D)``.
    """
    return normalized_std(_features("feats", feats, min_rows=2)).item()


def normalized_std(z: torch.Tensor) -> torch.Tensor:
    """:func:`feature_std` of embeddings (B, D) as a scalar tensor, without checks or a host sync:
    the training steps of the joint-embedding methods log it on every step."""
    return F.normalize(z.detach().float(), dim=1).std(dim=0).mean()


def effective_rank(feats: torch.Tensor, eps: float = 1e-7) -> float:
    """RankMe (Garrido et al. 2023): ``exp`` of the entropy of the normalised singular values.

    ``p_k = sigma_k / sum(sigma) + eps``; rank = ``exp(-sum p_k log p_k)``. Collapsed (all rows equal)
    features give 1; isotropic Gaussian features give close to ``min(N, D)``. ``eps`` = 1e-7 as in the
    paper keeps the log finite for zero singular values. Features are not centred (as in the paper).
    """
    z = _features("feats", feats)
    eps = checks.number("eps", eps, min=0, min_open=True)
    # float64 on the CPU: MPS has no float64, and an SVD of a feature matrix is cheap there.
    s = torch.linalg.svdvals(z.float().cpu().double())  # (min(N, D),)
    p = s / (s.sum() + eps) + eps
    return torch.exp(-(p * p.log()).sum()).item()


def alignment(z1: torch.Tensor, z2: torch.Tensor, alpha: float = 2) -> float:
    """Wang & Isola 2020 alignment: ``mean_i ||f(x_i) - f(y_i)||^alpha`` over positive pairs.

    ``z1[i]`` and ``z2[i]`` are features of two views of sample i; both are L2-normalised first (the
    metric is defined on the unit sphere). 0 when the views map to the same point; at most 2^alpha.
    """
    a = F.normalize(_features("z1", z1), dim=1)  # (N, D)
    b = F.normalize(_features("z2", z2), dim=1)  # (N, D)
    checks.same_shape("z1", z1, "z2", z2)
    alpha = checks.number("alpha", alpha, min=0, min_open=True)
    return (a - b).norm(dim=1).pow(alpha).mean().item()


def uniformity(z: torch.Tensor, t: float = 2) -> float:
    """Wang & Isola 2020 uniformity: ``log mean_{i<j} exp(-t ||f(x_i) - f(x_j)||^2)``.

    Features are L2-normalised first. 0 for collapsed features (all distances 0); more negative is
    more uniform (the minimum on the sphere is about -4 for t=2 in high dimension). Needs N >= 2;
    memory grows as N^2 / 2, so pass a subsample (a few thousand rows) of big feature sets.
    """
    x = F.normalize(_features("z", z, min_rows=2), dim=1)  # (N, D)
    t = checks.number("t", t, min=0, min_open=True)
    sq = torch.pdist(x, p=2).pow(2)  # (N(N-1)/2,) squared distances of all pairs i < j
    # logsumexp - log(count) == log(mean(exp(.))) without underflow for well-spread features
    return (torch.logsumexp(-t * sq, dim=0) - math.log(len(sq))).item()
