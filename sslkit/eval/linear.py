"""Linear probe: how linearly separable are the classes in a frozen feature space?

The standard SSL evaluation (e.g. Chen et al. 2020, SimCLR; Goyal et al. 2019): freeze the encoder,
fit a linear (multinomial logistic regression) classifier on its features with labels, report test
accuracy. The classifier is the only thing trained, so the score measures the features.

Protocol here: standardise features with the training mean/std, then minimise
``cross_entropy + weight_decay/2 * ||W||^2`` full-batch with L-BFGS (strong-Wolfe line search).
The objective is convex, so this converges in tens of iterations without a learning-rate
schedule to tune, is deterministic, and runs on the features' device (GPU when they are there).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from sslkit import checks
from sslkit.eval.features import check_probe_inputs


def standardize(train: torch.Tensor, test: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero-mean, unit-variance features using the *training* statistics only."""
    mean = train.mean(0, keepdim=True)  # (1, D)
    std = train.std(0, keepdim=True, unbiased=False)  # (1, D); ddof=0: one sample gives 0, not NaN
    # A dimension constant on the (few) training samples - e.g. a border pixel that is 0 in all ten
    # labelled digits - is only centred: dividing by ~0 would blow its test values up to ~1e6.
    std = torch.where(std > 1e-6, std, torch.ones_like(std))
    return (train - mean) / std, (test - mean) / std


def train_linear(feats: torch.Tensor, labels: torch.Tensor, num_classes: int, *, epochs: int = 100,
                 lr: float = 1.0, weight_decay: float = 1e-3, seed: int = 0
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """Fit ``W (C, D), b (C,)`` of a multinomial logistic regression on (already standardised) feats.

    ``epochs`` is the maximum number of L-BFGS iterations; each one is a full pass over the data.
    """
    g = torch.Generator().manual_seed(seed)
    d = feats.shape[1]
    # Tiny random init (the objective is convex: the seed only moves where L-BFGS starts).
    w = (torch.randn(num_classes, d, generator=g) * 1e-3).to(feats.device).requires_grad_()
    b = torch.zeros(num_classes, device=feats.device, requires_grad=True)
    # history_size=10 is L-BFGS's usual memory; tolerances stop early once converged.
    opt = torch.optim.LBFGS([w, b], lr=lr, max_iter=epochs, history_size=10,
                            tolerance_grad=1e-6, tolerance_change=1e-9, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        logits = feats @ w.T + b  # (N, C)
        loss = F.cross_entropy(logits, labels) + 0.5 * weight_decay * w.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():  # callers may be inside no_grad (e.g. an evaluation callback)
        opt.step(closure)
    return w.detach(), b.detach()


def linear_probe(train_feats: torch.Tensor, train_labels: torch.Tensor, test_feats: torch.Tensor,
                 test_labels: torch.Tensor, epochs: int = 100, lr: float = 1.0,
                 weight_decay: float = 1e-3, seed: int = 0) -> float:
    """Test accuracy (in [0, 1]) of a linear classifier trained on frozen features.

    Args:
        train_feats, test_feats: float (N, D) and (M, D) features (any device; training runs there).
        train_labels, test_labels: int (N,) and (M,) class ids >= 0.
        epochs: maximum L-BFGS iterations (full-batch passes); 100 is plenty for D <= a few thousand.
        lr: L-BFGS step scale; 1.0 is right with the strong-Wolfe line search.
        weight_decay: L2 penalty on the weights (per mean-loss, on standardised features); 1e-3
            keeps the few-label regime (1-10 labels per class) from overfitting while costing
            nothing measurable with thousands of labels.
        seed: seed of the (tiny) weight initialisation.
    """
    num_classes = check_probe_inputs(train_feats, train_labels, test_feats, test_labels)
    epochs = checks.integer("epochs", epochs, min=1)
    lr = checks.number("lr", lr, min=0, min_open=True)
    weight_decay = checks.number("weight_decay", weight_decay, min=0)
    seed = checks.integer("seed", seed)
    device = train_feats.device
    train_x, test_x = standardize(train_feats.float(), test_feats.float().to(device))
    w, b = train_linear(train_x, train_labels.to(device), num_classes, epochs=epochs, lr=lr,
                        weight_decay=weight_decay, seed=seed)
    pred = (test_x @ w.T + b).argmax(1)  # (M,)
    return (pred == test_labels.to(device)).float().mean().item()
