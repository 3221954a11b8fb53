"""Weighted k-nearest-neighbour classification of frozen features.

The kNN monitor of instance discrimination (Wu et al. 2018, "Unsupervised Feature Learning via
Non-Parametric Instance Discrimination"), used by MoCo, DINO and others: nothing is trained, so it
is a fast and hyper-parameter-light measure of feature quality.

For a test feature ``q`` (L2-normalised), take the ``k`` training features with the highest cosine
similarity ``s_i``; each votes for its class with weight ``exp(s_i / T)``; predict the class with
the largest summed vote.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from sslkit import checks
from sslkit.eval.features import check_probe_inputs

# Test rows per chunk are chosen so one (chunk, N) similarity matrix holds at most this many floats
# (64M floats = 256 MB), bounding memory for large training sets.
_MAX_SIM_ENTRIES = 1 << 26


def knn_predict(train_feats: torch.Tensor, train_labels: torch.Tensor, test_feats: torch.Tensor,
                num_classes: int, k: int = 20, temperature: float = 0.07) -> torch.Tensor:
    """Predicted class (M,) of each test feature; see :func:`knn_accuracy` (no validation here)."""
    device = train_feats.device
    train = F.normalize(train_feats.float(), dim=1)  # (N, D)
    test = F.normalize(test_feats.float().to(device), dim=1)  # (M, D)
    labels = train_labels.to(device)
    k = min(k, len(train))
    chunk = max(1, _MAX_SIM_ENTRIES // len(train))
    preds = []
    for start in range(0, len(test), chunk):
        sim = test[start:start + chunk] @ train.T  # (m, N) cosine similarities
        top_sim, top_idx = sim.topk(k, dim=1)  # (m, k)
        weights = (top_sim / temperature).exp()  # (m, k)
        votes = torch.zeros(len(sim), num_classes, device=device)  # (m, C)
        votes.scatter_add_(1, labels[top_idx], weights)
        preds.append(votes.argmax(1))
    return torch.cat(preds)


def knn_accuracy(train_feats: torch.Tensor, train_labels: torch.Tensor, test_feats: torch.Tensor,
                 test_labels: torch.Tensor, k: int = 20, temperature: float = 0.07) -> float:
    """Test accuracy (in [0, 1]) of weighted kNN on cosine similarity (Wu et al. 2018).

    Args:
        train_feats, test_feats: float (N, D) and (M, D) features; computed on train_feats' device.
        train_labels, test_labels: int (N,) and (M,) class ids >= 0.
        k: neighbours that vote (20 and 200 are the usual choices). If ``k`` exceeds the number of
            training samples N, all N vote (k is clipped to N) - so few-label evaluations with, e.g.,
            one label per class still work; ``k < 1`` is an error.
        temperature: T in the vote weight ``exp(sim / T)``; 0.07 as in Wu et al. makes the closest
            neighbours dominate.

    Ties in the summed votes go to the lowest class id.
    """
    num_classes = check_probe_inputs(train_feats, train_labels, test_feats, test_labels)
    k = checks.integer("k", k, min=1)
    temperature = checks.number("temperature", temperature, min=0, min_open=True)
    pred = knn_predict(train_feats, train_labels, test_feats, num_classes, k, temperature)
    return (pred == test_labels.to(pred.device)).float().mean().item()
