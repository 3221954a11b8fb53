"""Reconstruction losses: predict what was hidden (pixels of masked patches, masked tokens)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from sslkit import checks
from sslkit.losses._precision import full_precision, up


def norm_pix(patches: torch.Tensor, eps: float = 1e-6) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """MAE's normalised-pixel target: each patch minus its mean, over its std.

    He et al. 2022, "Masked Autoencoders Are Scalable Vision Learners", section 4 ("normalized
    pixels"); as the official code, the std is the unbiased one with ``eps`` = 1e-6 added to the
    variance. ``patches`` (..., P) with P >= 2 values per patch. Returns ``(normalised, mean, std)``
    with mean and std (..., 1), so ``normalised * std + mean`` gives the patches back (which is how
    ``MAE.reconstruct`` turns a prediction into pixels).
    """
    checks.tensor("patches", patches, dtypes="float")
    if patches.ndim < 1 or patches.shape[-1] < 2:
        raise ValueError(f"patches has shape {tuple(patches.shape)}; norm_pix needs at least 2 values "
                         f"per patch (the last dimension)")
    mean = patches.mean(dim=-1, keepdim=True)
    std = (patches.var(dim=-1, keepdim=True) + eps).sqrt()
    return (patches - mean) / std, mean, std


_norm_pix = norm_pix   # masked_mse's flag of the same name hides the function inside it


@full_precision
def masked_mse(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor,
               norm_pix: bool = False) -> torch.Tensor:
    """MAE reconstruction loss: mean squared error on the removed patches only.

    He et al. 2022, "Masked Autoencoders Are Scalable Vision Learners", section 3.

    Args:
        pred: (B, N, P) predicted patches (P = patch_size^2 * C pixels each).
        target: (B, N, P) true patches (``sslkit.pretext.patchify``).
        mask: (B, N) bool (or 0/1), True = removed; only those patches count.
        norm_pix: normalise each target patch by its own mean and (unbiased) std first
            (:func:`norm_pix`, MAE's "normalised pixels" target, which improves features).

    Per patch the loss is the mean over its P values; it is averaged over the removed patches. A
    mask with no removed patch gives 0 (nothing to reconstruct). Computed in float32 (float64 for
    float64 inputs), also under bf16 autocast.
    """
    checks.matching(ndim=3, pred=pred, target=target)
    m = up(checks.mask("mask", mask, tuple(pred.shape[:2])))        # (B, N)
    pred, target = up(pred), up(target)                             # fp32 under bf16 autocast
    if norm_pix:
        if target.shape[-1] < 2:
            raise ValueError("norm_pix=True needs patches with at least 2 values")
        target = _norm_pix(target)[0]
    per_patch = (pred - target).pow(2).mean(dim=-1)                    # (B, N)
    return (per_patch * m).sum() / m.sum().clamp_min(1.0)


def _check_targets_on_cpu(targets: torch.Tensor, m: torch.Tensor, V: int) -> None:
    """Masked targets must lie in [0, V); read only for CPU tensors (see ``mlm_cross_entropy``)."""
    if targets.device.type == "cpu" and m.device.type == "cpu":
        chosen = targets[m != 0]                                     # (M,) targets that count
        if chosen.numel() and (int(chosen.min()) < 0 or int(chosen.max()) >= V):
            raise ValueError(f"targets at masked positions have values in [{int(chosen.min())}, "
                             f"{int(chosen.max())}]; allowed: [0, {V - 1}] (V={V}, the last dim of logits)")


@full_precision
def mlm_cross_entropy(logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Masked-language-model loss: cross-entropy over the masked positions only.

    Devlin et al. 2019, "BERT", section 3.1 (task #1).

    Args:
        logits: (B, L, V) scores over the vocabulary at each position.
        targets: (B, L) int64 original token ids (anything, e.g. -100, where not masked).
        mask: (B, L) bool, True where a token was chosen for prediction.

    Returns the mean cross-entropy over the masked positions (0 when none is masked), computed in
    float32 (float64 for float64 logits), also under bf16 autocast.

    Masked targets must lie in [0, V). This is checked for CPU tensors only: on an accelerator the
    check would stop the GPU pipeline (a device-to-host sync) on every training step.
    """
    checks.tensor("logits", logits, ndim=3, dtypes="float")
    checks.tensor("targets", targets, ndim=2, dtypes="int")
    if targets.shape != logits.shape[:2]:
        raise ValueError(f"targets must have shape {tuple(logits.shape[:2])} (the (B, L) of logits); "
                         f"got {tuple(targets.shape)}")
    m = up(checks.mask("mask", mask, tuple(targets.shape)))                # (B, L)
    V = logits.shape[-1]
    _check_targets_on_cpu(targets, m, V)
    logits = up(logits)                                              # fp32 under bf16 autocast
    safe = targets.masked_fill(m == 0, 0)                            # ignored positions -> any valid id
    ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), safe.reshape(-1),
                         reduction="none").reshape(targets.shape)    # (B, L)
    return (ce * m).sum() / m.sum().clamp_min(1.0)
