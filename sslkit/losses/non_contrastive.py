"""Non-contrastive losses: no negatives; collapse is avoided by a stop-gradient or by decorrelation.

All compute in float32 (float64 for float64 inputs), also under bf16 autocast (see ``_precision``).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from sslkit import checks
from sslkit.losses._precision import full_precision, up


STATS = "it uses batch statistics"


@full_precision
def negative_cosine(p: torch.Tensor, z: torch.Tensor, detach: bool = True) -> torch.Tensor:
    """Negative cosine similarity ``-mean_i cos(p_i, z_i)``, in [-1, 1].

    Chen & He 2021, "Exploring Simple Siamese Representation Learning" (SimSiam), eq. 1; BYOL's
    normalised MSE is ``2 + 2 * negative_cosine``.

    Args:
        p: (N, D) predictions (online branch).
        z: (N, D) targets (other branch).
        detach: stop the gradient into ``z`` (SimSiam's stop-gradient; without it SimSiam collapses).
    """
    checks.embeddings(p=p, z=z)
    p, z = up(p), up(z)                                              # fp32 under bf16 autocast
    if detach:
        z = z.detach()
    return -F.cosine_similarity(p, z, dim=1).mean()


@full_precision
def barlow_twins(z1: torch.Tensor, z2: torch.Tensor, lambda_: float = 5e-3) -> torch.Tensor:
    """Barlow Twins redundancy-reduction loss.

    Zbontar et al. 2021, "Barlow Twins: Self-Supervised Learning via Redundancy Reduction", eq. 1.

    Args:
        z1, z2: (N, D) embeddings of two views, N >= 2.
        lambda_: weight of the off-diagonal (redundancy) term (paper: 5e-3 for D = 8192).

    Each dimension is standardised over the batch (mean 0, std 1 with the biased, divide-by-N
    variance, as the paper's BatchNorm), ``C = z1n.T @ z2n / N`` is the (D, D) cross-correlation, and
    the loss is ``sum_i (1 - C_ii)^2 + lambda_ * sum_{i != j} C_ij^2``.
    """
    checks.embeddings(z1=z1, z2=z2, min_batch=2, why=STATS)
    lambda_ = checks.number("lambda_", lambda_, min=0.0)
    z1, z2 = up(z1), up(z2)                                          # fp32 under bf16 autocast
    n = z1.shape[0]
    eps = 1e-5  # as BatchNorm: keeps constant dimensions finite
    z1n = (z1 - z1.mean(0)) / torch.sqrt(z1.var(0, unbiased=False) + eps)   # (N, D)
    z2n = (z2 - z2.mean(0)) / torch.sqrt(z2.var(0, unbiased=False) + eps)   # (N, D)
    c = z1n.T @ z2n / n                                                       # (D, D)
    diag = torch.diagonal(c)
    on_diag = (1 - diag).pow(2).sum()
    off_diag = c.pow(2).sum() - diag.pow(2).sum()
    return on_diag + lambda_ * off_diag


@full_precision
def invariance_term(z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
    """VICReg invariance ``s(Z, Z') = mean over all N*D entries of (z1 - z2)^2``. Bardes et al. 2022, eq. 5."""
    checks.embeddings(z1=z1, z2=z2)
    return F.mse_loss(up(z1), up(z2))


@full_precision
def variance_term(z: torch.Tensor, gamma: float = 1.0, eps: float = 1e-4) -> torch.Tensor:
    """VICReg variance ``v(Z) = mean_j relu(gamma - sqrt(Var(z_j) + eps))`` (hinge on the per-dim std).

    Bardes et al. 2022, "VICReg", eq. 1-2. ``z`` (N, D), N >= 2; unbiased variance. 0 when every
    dimension has std >= ``gamma``; it keeps the embeddings from collapsing to a point.
    """
    checks.embeddings(z=z, min_batch=2, why=STATS)
    gamma = checks.number("gamma", gamma, min=0.0)
    eps = checks.number("eps", eps, min=0.0)
    std = torch.sqrt(up(z).var(dim=0) + eps)                                       # (D,)
    return F.relu(gamma - std).mean()


@full_precision
def covariance_term(z: torch.Tensor) -> torch.Tensor:
    """VICReg covariance ``c(Z) = (1/D) sum_{i != j} Cov(Z)_ij^2`` (decorrelates the dimensions).

    Bardes et al. 2022, "VICReg", eq. 3-4. ``z`` (N, D), N >= 2; unbiased covariance. 0 when the
    dimensions are uncorrelated over the batch.
    """
    checks.embeddings(z=z, min_batch=2, why=STATS)
    n, d = z.shape
    z = up(z)                                                                  # fp32 under bf16 autocast
    zc = z - z.mean(dim=0)
    cov = zc.T @ zc / (n - 1)                                                  # (D, D)
    return (cov.pow(2).sum() - torch.diagonal(cov).pow(2).sum()) / d


VAR_REDUCTIONS = ("mean", "sum")


@full_precision
def vicreg_terms(z1: torch.Tensor, z2: torch.Tensor, sim_weight: float = 25.0, var_weight: float = 25.0,
                 cov_weight: float = 1.0, var_reduction: str = "mean") -> dict[str, torch.Tensor]:
    """The VICReg loss and its three (unweighted) terms: keys loss, invariance, variance, covariance.

    ``variance`` combines the two branches' hinges by ``var_reduction``:

    * ``"mean"`` (default): ``(v(z1) + v(z2)) / 2``, as the official code
      (facebookresearch/vicreg); the weights 25 / 25 / 1 were tuned with this form.
    * ``"sum"``: ``v(z1) + v(z2)``, the paper's eq. 6 as printed - the same loss with the variance
      weight doubled (so ``var_weight=12.5`` with "sum" equals the default).

    ``covariance`` is ``c(z1) + c(z2)`` in both (paper and code agree).
    """
    checks.embeddings(z1=z1, z2=z2, min_batch=2, why=STATS)
    sim_weight = checks.number("sim_weight", sim_weight, min=0.0)
    var_weight = checks.number("var_weight", var_weight, min=0.0)
    cov_weight = checks.number("cov_weight", cov_weight, min=0.0)
    checks.choice("var_reduction", var_reduction, VAR_REDUCTIONS)
    z1, z2 = up(z1), up(z2)                                          # fp32 under bf16 autocast
    inv = invariance_term(z1, z2)
    var = variance_term(z1) + variance_term(z2)
    if var_reduction == "mean":
        var = var / 2
    cov = covariance_term(z1) + covariance_term(z2)
    loss = sim_weight * inv + var_weight * var + cov_weight * cov
    return {"loss": loss, "invariance": inv, "variance": var, "covariance": cov}


@full_precision
def vicreg(z1: torch.Tensor, z2: torch.Tensor, sim_weight: float = 25.0, var_weight: float = 25.0,
           cov_weight: float = 1.0, var_reduction: str = "mean") -> torch.Tensor:
    """VICReg: Variance-Invariance-Covariance Regularisation (Bardes, Ponce & LeCun 2022), eq. 6.

    ``sim_weight * s(z1, z2) + var_weight * V + cov_weight * (c(z1) + c(z2))`` for ``z1, z2``
    (N, D), N >= 2, where ``V = (v(z1) + v(z2)) / 2`` as the official code (``var_reduction="mean"``,
    the form the default weights were tuned on) or ``v(z1) + v(z2)`` as eq. 6 is printed
    (``"sum"``); see :func:`invariance_term`, :func:`variance_term`, :func:`covariance_term`, and
    :func:`vicreg_terms` for the terms separately.
    """
    return vicreg_terms(z1, z2, sim_weight, var_weight, cov_weight, var_reduction)["loss"]
