"""Self-distillation loss of DINO: a student matches a centred, sharpened teacher across views."""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from sslkit import checks
from sslkit.losses._precision import full_precision, up


@full_precision
def dino_loss(student_logits: torch.Tensor | Sequence[torch.Tensor],
              teacher_logits: torch.Tensor | Sequence[torch.Tensor], center: torch.Tensor,
              student_temp: float = 0.1, teacher_temp: float = 0.04) -> torch.Tensor:
    """DINO cross-entropy between teacher and student views.

    Caron et al. 2021, "Emerging Properties in Self-Supervised Vision Transformers", algorithm 1.

    Args:
        student_logits: (n_s, B, K) head outputs of the student for n_s views (a list of n_s (B, K)
            tensors is stacked). By DINO's convention the first n_t views are the same global crops
            the teacher saw, in the same order; the rest are local crops.
        teacher_logits: (n_t, B, K) teacher outputs for the global views (or a list). No gradient
            flows into them.
        center: (K,) running mean of teacher logits, subtracted before sharpening (avoids one
            dimension dominating; the method updates it with an EMA).
        student_temp: student softmax temperature (paper: 0.1).
        teacher_temp: teacher temperature, lower = sharper targets (paper: 0.04, warmed up from 0.04-0.07).

    For every teacher view i and student view j with j != i (no pair of a view with itself), the
    loss is ``-sum_k softmax((t_i - center)/teacher_temp)_k * log_softmax(s_j/student_temp)_k``,
    averaged over the batch and then over all such pairs. Computed in float32 (float64 for float64
    inputs), also under bf16 autocast.
    """
    s, t = checks.stacked_views(student_logits=student_logits, teacher_logits=teacher_logits)
    checks.tensor("center", center, ndim=(1, 2), dtypes="float")     # s: (n_s, B, K), t: (n_t, B, K)
    if center.numel() != s.shape[-1]:
        raise ValueError(f"center must have K={s.shape[-1]} entries (shape (K,) or (1, K)); got "
                         f"shape {tuple(center.shape)}")
    student_temp = checks.number("student_temp", student_temp, min=0.0, min_open=True)
    teacher_temp = checks.number("teacher_temp", teacher_temp, min=0.0, min_open=True)
    n_s, n_t = s.shape[0], t.shape[0]
    if n_s * n_t - min(n_s, n_t) < 1:
        raise ValueError(f"dino_loss needs a pair of different views; got {n_s} student and {n_t} "
                         f"teacher view(s)")
    s, t, center = up(s), up(t), up(center)                          # fp32 under bf16 autocast
    q = F.softmax((t.detach() - center.detach().reshape(1, 1, -1)) / teacher_temp, dim=-1)  # (n_t, B, K)
    log_p = F.log_softmax(s / student_temp, dim=-1)                                         # (n_s, B, K)
    # ce[i, j] = mean_b of -sum_k q[i, b, k] log_p[j, b, k]                                (n_t, n_s)
    ce = -torch.einsum("ibk,jbk->ij", q, log_p) / s.shape[1]
    same = torch.eye(n_t, n_s, dtype=torch.bool, device=s.device)   # teacher view i == student view i
    # The min(n_s, n_t) pairs of a view with itself are left out (counted from the shapes: no sync).
    return ce.masked_fill(same, 0.0).sum() / (n_t * n_s - min(n_s, n_t))
