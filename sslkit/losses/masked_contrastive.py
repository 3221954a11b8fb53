"""Masked contrastive prediction (wav2vec 2.0): at each masked frame, pick the true latent among
distractors drawn from the other masked frames of the same clip.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from sslkit import checks
from sslkit.losses._precision import full_precision, up


def candidate_logits(pred: torch.Tensor, targets: torch.Tensor, distractors: torch.Tensor,
                     temperature: float = 0.1) -> torch.Tensor:
    """Logits (B, S, 1 + K) of every frame: index 0 its true target, then its K distractors.

    ``cos(pred[b, t], targets[b, j]) / temperature``; a distractor equal to the true target in every
    feature (e.g. two frames of digital silence) gets -inf: it cannot be told apart, so it is no
    negative (as the official code does). Computed for all frames - no data-dependent shapes, so no
    host-device sync on a GPU; the loss keeps the masked ones.
    """
    checks.matching(ndim=3, pred=pred, targets=targets)
    checks.tensor("distractors", distractors, ndim=3, dtypes="int")
    if tuple(distractors.shape[:2]) != tuple(pred.shape[:2]) or distractors.shape[2] < 1:
        raise ValueError(f"distractors has shape {tuple(distractors.shape)}; allowed: (B, S, K) with "
                         f"(B, S) = {tuple(pred.shape[:2])} and K >= 1")
    temperature = checks.number("temperature", temperature, min=0.0, min_open=True)
    pred, targets = up(pred), up(targets)                                      # fp32 under autocast
    B, S, D = targets.shape
    K = distractors.shape[2]
    neg = targets.gather(1, distractors.reshape(B, S * K, 1).expand(B, S * K, D)).view(B, S, K, D)
    cand = torch.cat([targets[:, :, None], neg], dim=2)                       # (B, S, 1 + K, D)
    q = F.normalize(pred, dim=-1)                                              # (B, S, D)
    logits = torch.einsum("bsd,bskd->bsk", q, F.normalize(cand, dim=-1)) / temperature  # (B, S, 1 + K)
    same = (neg == targets[:, :, None]).all(dim=-1)                            # (B, S, K)
    return logits.masked_fill(F.pad(same, (1, 0), value=False), float("-inf"))


@full_precision
def masked_contrastive_terms(pred: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor,
                             distractors: torch.Tensor, temperature: float = 0.1) -> dict[str, torch.Tensor]:
    """``{"loss", "accuracy"}`` of :func:`masked_contrastive`; accuracy = share of masked frames whose
    true target has the highest logit (0 when nothing is masked)."""
    checks.tensor("mask", mask, ndim=2, dtypes=(torch.bool,))
    if tuple(mask.shape) != tuple(pred.shape[:2]):
        raise ValueError(f"mask has shape {tuple(mask.shape)}; allowed: (B, S) = {tuple(pred.shape[:2])} "
                         f"to match pred {tuple(pred.shape)}")
    logits = candidate_logits(pred, targets, distractors, temperature)        # (B, S, 1 + K)
    # -log softmax of column 0 = logsumexp - logit of the true target (>= 0; 0 with no negatives)
    nll = torch.logsumexp(logits, dim=-1) - logits[..., 0]                    # (B, S)
    weight = mask.to(nll.dtype)
    count = weight.sum().clamp(min=1.0)                                       # 0 masked -> loss 0
    loss = (nll * weight).sum() / count
    with torch.no_grad():
        accuracy = ((logits.argmax(dim=-1) == 0).to(nll.dtype) * weight).sum() / count
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
        distractors: long (B, S, K) frame indices in [0, S) of each frame's distractors (other
            masked frames of the same clip, ``sslkit.pretext.audio.sample_distractors``); used at
            masked frames.
        temperature: kappa > 0 dividing the cosine similarities (paper: 0.1).

    Returns the mean over masked frames of ``-log softmax`` of the true target among itself and its
    K distractors (scalar); 0 when nothing is masked. float32 (float64 for float64 inputs).
    """
    return masked_contrastive_terms(pred, targets, mask, distractors, temperature)["loss"]


__all__ = ["candidate_logits", "masked_contrastive", "masked_contrastive_terms"]
