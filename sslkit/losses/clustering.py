"""Online clustering (SwAV): balanced soft codes by Sinkhorn-Knopp, and the swapped prediction loss.

Caron, Misra, Mairal, Goyal, Bojanowski & Joulin (2020), "Unsupervised Learning of Visual Features by
Contrasting Cluster Assignments", https://arxiv.org/abs/2006.09882 (section 3.1, appendix A.1).

    scores (B, K) = cos(z_b, c_k)  ─ sinkhorn ─> codes q (B, K): rows sum to 1, columns ~ B / K
    loss = - sum_k q_s[b, k] log softmax(scores_t[b] / temperature)_k   (view t predicts view s's code)
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from sslkit import checks, distributed
from sslkit.losses._precision import full_precision, up


def _log_column_sums(log_q: torch.Tensor) -> torch.Tensor:
    """(1, K) log of each column's sum over the rows of every process (a stable logsumexp)."""
    m = distributed.all_reduce_max(log_q.max(dim=0, keepdim=True).values)               # (1, K)
    return m + distributed.all_reduce_sum((log_q - m).exp().sum(dim=0, keepdim=True)).log()


@torch.no_grad()
@full_precision
def sinkhorn(scores: torch.Tensor, epsilon: float = 0.05, iterations: int = 3) -> torch.Tensor:
    """Soft codes (B, K) that spread the B samples equally over the K prototypes (SwAV's Q).

    Solves the entropy-regularised assignment ``max_Q Tr(Q^T S) + epsilon H(Q)`` over the transport
    polytope (every prototype gets B / K of the mass, every sample 1) with ``iterations`` rounds of
    Sinkhorn-Knopp, as the official ``distributed_sinkhorn``: start from ``exp(scores / epsilon)``,
    then per round divide each prototype's column by its sum times K and each sample's row by its sum
    times B; finally multiply by B. Every row of the result sums to 1; the column sums approach B / K
    as ``iterations`` grows (the paper's 3 rounds do not balance exactly: they stop a few prototypes
    taking the whole batch, which is all the loss needs).

    The same steps run on log Q (divisions become subtractions of log-sums), so ``exp(scores /
    epsilon)`` never overflows or underflows - ``exp(1 / 0.01)`` is beyond float32 - and the codes
    equal the official ones up to rounding. (The official first step, scaling Q to total mass 1,
    is left out: the first column division cancels any common factor.)

    Under DDP every rank passes its own (B_r, K) rows: the column sums (and the maxima that keep them
    stable) are all-reduced (``sslkit.distributed.all_reduce_sum``/``all_reduce_max``) and B counts
    all ranks' rows, so each rank gets its rows of the codes one process would compute for the
    whole batch. One process: no communication.

    Args:
        scores: (B, K) similarities of samples to prototypes (cosines in SwAV). No gradient flows.
        epsilon: entropy weight; smaller = harder codes. Paper: 0.05 (lower risks collapse to few
            prototypes; higher gives uniform, uninformative codes).
        iterations: Sinkhorn rounds, >= 1. Paper: 3.

    Computed in float32 (float64 for float64 input), also under autocast.
    """
    checks.tensor("scores", scores, ndim=2, dtypes="float")
    if scores.shape[0] < 1 or scores.shape[1] < 1:
        raise ValueError(f"scores must be (B, K) with B, K >= 1; got shape {tuple(scores.shape)}")
    epsilon = checks.number("epsilon", epsilon, min=0.0, min_open=True)
    iterations = checks.integer("iterations", iterations, min=1)
    log_q = up(scores.detach()) / epsilon                                 # (B, K) log of exp(S / eps)
    log_k = math.log(log_q.shape[1])
    log_b = math.log(log_q.shape[0] * distributed.world_size())           # B: the global batch
    for _ in range(iterations):
        log_q = log_q - _log_column_sums(log_q) - log_k                   # each prototype: mass 1 / K
        log_q = log_q - log_q.logsumexp(dim=1, keepdim=True) - log_b      # each sample: mass 1 / B
    return (log_q + log_b).exp()                                          # rows sum to 1


@full_precision
def swav_loss(scores: torch.Tensor | Sequence[torch.Tensor], codes: torch.Tensor | Sequence[torch.Tensor],
              temperature: float = 0.1) -> torch.Tensor:
    """SwAV's swapped prediction: every view predicts the codes of the other views.

    Caron et al. 2020, equations (1)-(2) with multi-crop (section 3.2).

    Args:
        scores: (V, B, K) prototype scores of all V views (or a list of V (B, K) tensors).
        codes: (A, B, K) codes (e.g. :func:`sinkhorn`) of the first A views, A <= V - in SwAV the
            two global crops; local crops only predict. No gradient flows into the codes.
        temperature: softmax temperature of the predictions. Paper: 0.1.

    ``loss = mean_{i < A} mean_{v != i} mean_b [ -sum_k codes[i, b, k] log softmax(scores[v, b] / T)_k ]``
    - the official code's average: over the V - 1 predicting views, then over the A coded views.
    """
    s, q = checks.stacked_views(scores=scores, codes=codes)          # (V, B, K), (A, B, K)
    n_views, n_coded = s.shape[0], q.shape[0]
    if n_views < 2 or n_coded > n_views:
        raise ValueError(f"swav_loss needs V >= 2 views and at most V coded views; got V={n_views} "
                         f"scores and A={n_coded} codes")
    temperature = checks.number("temperature", temperature, min=0.0, min_open=True)
    log_p = torch.log_softmax(up(s) / temperature, dim=-1)          # (V, B, K)
    # ce[i, v] = mean_b of -sum_k q[i, b, k] log_p[v, b, k]                              (A, V)
    ce = -torch.einsum("ibk,vbk->iv", up(q).detach(), log_p) / s.shape[1]
    same = torch.eye(n_coded, n_views, dtype=torch.bool, device=s.device)   # a view never predicts itself
    return ce.masked_fill(same, 0.0).sum() / (n_coded * (n_views - 1))
