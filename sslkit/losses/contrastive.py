"""Contrastive losses: pull a positive pair together, push the other samples away.

Both are cross-entropies over similarity logits; they differ only in where the negatives come from.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from sslkit import checks
from sslkit.losses._precision import full_precision, up


@full_precision
def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.5) -> torch.Tensor:
    """NT-Xent, the normalised temperature-scaled cross-entropy of SimCLR.

    Chen et al. 2020, "A Simple Framework for Contrastive Learning of Visual Representations", eq. 1.

    Args:
        z1, z2: (N, D) embeddings of two views; ``(z1[i], z2[i])`` is a positive pair. N >= 2.
        temperature: tau > 0 dividing the cosine similarities (SimCLR: 0.5 for CIFAR-10, 0.1 at
            large batch on ImageNet).

    The 2N views are stacked; each is an anchor whose positive is its partner view and whose
    negatives are the other 2N - 2 views. Vectors are L2-normalised inside (cosine similarity), so
    the loss does not depend on the scale of ``z``. Returns the mean over the 2N anchors (scalar).
    Computed in float32 (float64 for float64 inputs), also under bf16 autocast.
    """
    checks.embeddings(z1=z1, z2=z2, min_batch=2, why="the other samples are the negatives")
    temperature = checks.number("temperature", temperature, min=0.0, min_open=True)
    n = z1.shape[0]
    z1, z2 = up(z1), up(z2)                                          # fp32 under bf16 autocast
    z = F.normalize(torch.cat([z1, z2]), dim=1)                      # (2N, D)
    logits = z @ z.T / temperature                                    # (2N, 2N)
    self_mask = torch.eye(2 * n, dtype=torch.bool, device=z.device)
    logits = logits.masked_fill(self_mask, float("-inf"))            # a view is not its own negative
    # The positive of view i is view i + N (and of i + N, view i).
    targets = torch.arange(2 * n, device=z.device).roll(n)             # (2N,): [N..2N-1, 0..N-1]
    return F.cross_entropy(logits, targets)


@full_precision
def info_nce(query: torch.Tensor, key: torch.Tensor, negatives: torch.Tensor | None = None,
             temperature: float = 0.07, normalize: bool = True) -> torch.Tensor:
    """InfoNCE: classify the positive key among negatives (cross-entropy over similarity logits).

    van den Oord et al. 2018, "Representation Learning with Contrastive Predictive Coding" (CPC), eq. 4;
    He et al. 2020, "Momentum Contrast" (MoCo), eq. 1.

    Args:
        query: (N, D) queries.
        key: (N, D) positive keys; ``key[i]`` is the positive of ``query[i]``.
        negatives: (K, D) negatives shared by all queries (MoCo's queue): logits are
            ``[q.k+, q.n_1 .. q.n_K]`` with the positive in column 0. ``None``: in-batch negatives,
            logits ``q @ key.T`` (N, N) with the positive on the diagonal (needs N >= 2).
        temperature: tau > 0 (MoCo: 0.07).
        normalize: L2-normalise query, key and negatives first (cosine similarity, as MoCo);
            ``False`` uses raw dot products (CPC's log-bilinear score when ``query`` is already
            ``W_k c_t``).

    Returns the mean cross-entropy over the N queries (scalar), computed in float32 (float64 for
    float64 inputs), also under bf16 autocast.
    """
    checks.embeddings(query=query, key=key, min_batch=2 if negatives is None else 1,
                      why="in-batch InfoNCE: the other keys are the negatives; or pass negatives")
    temperature = checks.number("temperature", temperature, min=0.0, min_open=True)
    query, key = up(query), up(key)                                  # fp32 under bf16 autocast
    if normalize:
        query, key = F.normalize(query, dim=1), F.normalize(key, dim=1)
    if negatives is None:
        logits = query @ key.T / temperature                              # (N, N)
        targets = torch.arange(query.shape[0], device=query.device)      # positives on the diagonal
        return F.cross_entropy(logits, targets)
    checks.tensor("negatives", negatives, ndim=2, dtypes="float")
    if negatives.shape[1] != query.shape[1] or negatives.shape[0] < 1:
        raise ValueError(f"negatives must have shape (K >= 1, {query.shape[1]}) to match query "
                         f"{tuple(query.shape)}; got {tuple(negatives.shape)}")
    negatives = up(negatives)
    if normalize:
        negatives = F.normalize(negatives, dim=1)
    pos = (query * key).sum(dim=1, keepdim=True)                         # (N, 1)
    neg = query @ negatives.T                                            # (N, K)
    logits = torch.cat([pos, neg], dim=1) / temperature                  # (N, 1 + K)
    targets = torch.zeros(query.shape[0], dtype=torch.long, device=query.device)
    return F.cross_entropy(logits, targets)
