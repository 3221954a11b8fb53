"""Predicting what comes next in text: next-token cross-entropy (GPT) and skip-gram with negative
sampling (word2vec)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from sslkit import checks
from sslkit.losses._precision import full_precision, up


@full_precision
def next_token_cross_entropy(logits: torch.Tensor, ids: torch.Tensor, pad_id: int | None = None
                             ) -> torch.Tensor:
    """Mean of ``-log p(ids[:, t + 1] | ids[:, :t + 1])`` over the positions of a causal language model.

    Radford, Narasimhan, Salimans & Sutskever (2018), "Improving Language Understanding by Generative
    Pre-Training", equation (1) (the factorisation goes back to Shannon and Bengio et al. 2003).

    Args:
        logits: (B, L, V) outputs of a causal model; ``logits[:, t]`` may only depend on ``ids[:, :t + 1]``.
        ids: (B, L) the token ids the model read; position t is scored on ``ids[:, t + 1]``.
        pad_id: targets equal to it are left out (padding after the end of a text); None = none.

    Returns the mean over the B * (L - 1) targets that are not padding (0 when there are none).
    Computed in float32 (float64 for float64 logits), also under autocast.
    """
    checks.tensor("logits", logits, ndim=3, dtypes="float")
    checks.tensor("ids", ids, ndim=2, dtypes="int")
    if logits.shape[:2] != ids.shape:
        raise ValueError(f"logits has shape {tuple(logits.shape)} and ids {tuple(ids.shape)}; "
                         f"logits must be (B, L, V) for ids (B, L)")
    if ids.shape[1] < 2:
        raise ValueError(f"ids has length {ids.shape[1]}; next-token prediction needs L >= 2")
    targets = ids[:, 1:]                                               # (B, L - 1)
    if pad_id is not None:
        pad_id = checks.integer("pad_id", pad_id, min=0, max=logits.shape[-1] - 1)
        targets = targets.masked_fill(targets == pad_id, -100)         # -100: cross_entropy skips it
    ce = F.cross_entropy(up(logits[:, :-1]).flatten(0, 1), targets.flatten(), ignore_index=-100,
                         reduction="sum")
    return ce / (targets != -100).sum().clamp_min(1)


@full_precision
def skipgram_negative_sampling(center: torch.Tensor, context: torch.Tensor, negatives: torch.Tensor,
                               weight: torch.Tensor | None = None) -> torch.Tensor:
    """word2vec's skip-gram objective with negative sampling, to be minimised.

    Mikolov, Sutskever, Chen, Corrado & Dean (2013), "Distributed Representations of Words and Phrases
    and their Compositionality", equation (4): for a centre word vector v and the output vector u of
    a word seen in its window, ``-log sigma(u . v) - sum_j log sigma(-n_j . v)`` over k output vectors
    n_j of words drawn from the noise distribution.

    Args:
        center: (N, D) input vectors of the centre words.
        context: (N, D) output vectors of the context words (one pair per row).
        negatives: (N, k, D) output vectors of k noise words per pair.
        weight: optional (N,) pair weights (0 drops a pair: fixed-shape batches with invalid pairs).

    Returns the weighted mean over pairs (0 when every weight is 0).
    """
    checks.tensor("center", center, ndim=2, dtypes="float")
    if center.shape[0] < 1:
        raise ValueError(f"center is empty (shape {tuple(center.shape)}); give at least one pair")
    checks.same_shape("center", center, "context", context)
    checks.tensor("negatives", negatives, ndim=3, dtypes="float")
    if negatives.shape[0] != center.shape[0] or negatives.shape[2] != center.shape[1]:
        raise ValueError(f"negatives must be (N, k, D) = ({center.shape[0]}, k, {center.shape[1]}) "
                         f"for center {tuple(center.shape)}; got {tuple(negatives.shape)}")
    v, u, n = up(center), up(context), up(negatives)
    pos = F.logsigmoid((u * v).sum(-1))                                # (N,)
    neg = F.logsigmoid(-torch.einsum("nkd,nd->nk", n, v)).sum(-1)      # (N,)
    per_pair = -(pos + neg)                                            # (N,)
    if weight is None:
        return per_pair.mean()
    checks.tensor("weight", weight, ndim=1, dtypes="float")
    if weight.shape[0] != center.shape[0]:
        raise ValueError(f"weight must be (N,) = ({center.shape[0]},); got {tuple(weight.shape)}")
    w = up(weight)
    return (w * per_pair).sum() / w.sum().clamp_min(1e-12)
