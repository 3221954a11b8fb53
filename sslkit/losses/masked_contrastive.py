"""Masked contrastive prediction (wav2vec 2.0): at each masked frame, pick the true latent among
distractors drawn from the other masked frames of the same clip.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from sslkit import checks
from sslkit.losses._precision import full_precision, up


def _check(pred: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor, distractors: torch.Tensor) -> None:
    checks.tensor("pred", pred, ndim=3, dtypes="float")
    checks.tensor("targets", targets, ndim=3, dtypes="float")
    checks.same_shape("pred", pred, "targets", targets)
    checks.tensor("mask", mask, ndim=2, dtypes=(torch.bool,))
    if tuple(mask.shape) != tuple(pred.shape[:2]):
        raise ValueError(f"mask has shape {tuple(mask.shape)}; allowed: (B, S) = {tuple(pred.shape[:2])} "
                         f"to match pred {tuple(pred.shape)}")
    checks.tensor("distractors", distractors, ndim=3, dtypes="int")
    if tuple(distractors.shape[:2]) != tuple(pred.shape[:2]) or distractors.shape[2] < 1:
        raise ValueError(f"distractors has shape {tuple(distractors.shape)}; allowed: (B, S, K) with "
                         f"(B, S) = {tuple(pred.shape[:2])} and K >= 1")


def candidate_logits(pred: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor,
                     distractors: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """Logits (N, 1 + K) of the N masked frames: column 0 the true target, then the K distractors.

    ``cos(pred[b, t], targets[b, j]) / temperature``; a distractor equal to the true target in every
    feature (e.g. two frames of digital silence) gets -inf: it cannot be told apart, so it is no
    negative (as the official code does).
    """
    _check(pred, targets, mask, distractors)
    temperature = checks.number("temperature", temperature, min=0.0, min_open=True)
    pred, targets = up(pred), up(targets)                                      # fp32 under autocast
    b, t = mask.nonzero(as_tuple=True)                                        # (N,), (N,)
    q = F.normalize(pred[b, t], dim=-1)                                        # (N, D)
    pos = targets[b, t]                                                        # (N, D)
    neg = targets[b[:, None], distractors[b, t]]                              # (N, K, D)
    cand = torch.cat([pos[:, None], neg], dim=1)                              # (N, 1 + K, D)
    logits = torch.einsum("nd,nkd->nk", q, F.normalize(cand, dim=-1)) / temperature  # (N, 1 + K)
    same = (neg == pos[:, None]).all(dim=-1)                                   # (N, K)
    return logits.masked_fill(F.pad(same, (1, 0), value=False), float("-inf"))


@full_precision
def masked_contrastive_terms(pred: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor,
                             distractors: torch.Tensor, temperature: float = 0.1) -> dict[str, torch.Tensor]:
    """``{"loss", "accuracy"}`` of :func:`masked_contrastive`; accuracy = share of masked frames whose
    true target has the highest logit (0 when nothing is masked)."""
    logits = candidate_logits(pred, targets, mask, distractors, temperature)  # (N, 1 + K)
    if logits.shape[0] == 0:                                                  # nothing masked
        zero = (pred.sum() + targets.sum()) * 0.0
        return {"loss": zero, "accuracy": zero.detach()}
    zeros = torch.zeros(logits.shape[0], dtype=torch.long, device=logits.device)
    loss = F.cross_entropy(logits, zeros)
    with torch.no_grad():
        accuracy = (logits.argmax(dim=1) == 0).float().mean()
    return {"loss": loss, "accuracy": accuracy}


def masked_contrastive(pred: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor,
                       distractors: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """The contrastive loss of wav2vec 2.0 without its quantiser (continuous targets).

    Baevski, Zhou, Mohamed & Auli (2020), "wav2vec 2.0: A Framework for Self-Supervised Learning of
    Speech Representations", eq. 3 (L_m), https://arxiv.org/abs/2006.11477.

    Args:
        pred: (B, S, D) the context network's output at every frame (projected).
        targets: (B, S, D) the latent of every frame, computed from the *unmasked* input (projected).
        mask: bool (B, S), True at the masked frames where the loss is taken.
        distractors: long (B, S, K) frame indices of each frame's distractors (other masked frames
            of the same clip, ``sslkit.pretext.audio.sample_distractors``); used at masked frames.
        temperature: kappa > 0 dividing the cosine similarities (paper: 0.1).

    Returns the mean over masked frames of ``-log softmax`` of the true target among itself and its
    K distractors (scalar); 0 when nothing is masked. float32 (float64 for float64 inputs).
    """
    return masked_contrastive_terms(pred, targets, mask, distractors, temperature)["loss"]


__all__ = ["candidate_logits", "masked_contrastive", "masked_contrastive_terms"]
