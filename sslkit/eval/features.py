"""Turn a model and a dataset into a feature matrix for probing.

    feats, labels = sslkit.eval.extract_features(method, ds)      # (N, D), (N,)

The model may be a :class:`sslkit.methods.Method` (its ``embed``), a backbone (its
``forward_features``) or any callable mapping a batch to ``(B, D)``.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from sslkit import checks

Data = Any  # a sslkit.data.Dataset, or a pair (x, labels) of tensors


def data_size(name: str, data: Data) -> int:
    """Number of samples in ``data`` (a Dataset or an ``(x, labels)`` pair), validated."""
    if isinstance(data, (tuple, list)):
        if len(data) != 2:
            raise ValueError(f"{name} must be a Dataset or a pair (x, labels); got a sequence of "
                             f"length {len(data)}")
        x, labels = data
        checks.tensor(f"{name}[0] (x)", x)
        checks.tensor(f"{name}[1] (labels)", labels, ndim=1, dtypes="int")
        if len(x) != len(labels):
            raise ValueError(f"{name}: x has {len(x)} samples but labels has {len(labels)}")
        return len(x)
    if not (hasattr(data, "batch") and hasattr(data, "labels")):
        raise ValueError(f"{name} must be a sslkit.data.Dataset or a pair (x, labels) of tensors; "
                         f"got {type(data).__name__}")
    return len(data)


def data_labels(data: Data) -> torch.Tensor:
    """The int64 (N,) labels of a Dataset or an ``(x, labels)`` pair."""
    return data[1] if isinstance(data, (tuple, list)) else data.labels


def data_batch(data: Data, idx: torch.Tensor) -> torch.Tensor:
    """Model inputs at ``idx``: ``Dataset.batch`` (float images in [0, 1]) or ``x[idx]`` for a pair."""
    if isinstance(data, (tuple, list)):
        x = data[0]
        return x[idx if idx.device == x.device else idx.to(x.device)]
    return data.batch(idx)


def data_to(data: Data, device: torch.device) -> Data:
    """``data`` (a Dataset or an ``(x, labels)`` pair) on ``device``: moved once, then indexed there."""
    if isinstance(data, (tuple, list)):
        return data[0].to(device), data[1].to(device)
    return data.to(device)


def data_subset(data: Data, idx: torch.Tensor) -> Data:
    """The samples at ``idx``, in the same form as ``data``."""
    if isinstance(data, (tuple, list)):
        x, labels = data
        return x[idx.to(x.device)], labels[idx.to(labels.device)]
    return data.subset(idx)


def model_device(model: Any, fallback: torch.device) -> torch.device:
    """Device of a module's first parameter/buffer; ``fallback`` for plain callables."""
    if isinstance(model, nn.Module):
        for t in model.parameters():
            return t.device
        for t in model.buffers():
            return t.device
    return fallback


def feature_fn(model: Any) -> Callable[[torch.Tensor], torch.Tensor]:
    """The function ``x -> (B, D)`` to call for ``model`` (``embed`` > ``forward_features`` > call)."""
    if hasattr(model, "embed") and callable(model.embed):
        return model.embed
    if hasattr(model, "forward_features") and callable(model.forward_features):
        return model.forward_features
    if callable(model):
        return model
    raise ValueError(f"model must be a Method (embed), a backbone (forward_features) or a callable; "
                     f"got {type(model).__name__}")


def extract_features(model: Any, data: Data, batch_size: int = 512
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """Features of every sample of ``data`` under ``model``.

    Runs in eval mode (BatchNorm uses running stats, dropout off) under ``torch.no_grad`` on the
    model's device, batch by batch in dataset order; each submodule's train/eval flag is restored
    afterwards.

    Args:
        model: a Method (uses ``embed``), a backbone (``forward_features``) or a callable
            ``x (B, ...) -> (B, D)``; plain callables run on the data's device.
        data: a ``sslkit.data.Dataset`` or a pair ``(x, labels)`` of tensors.
        batch_size: samples per forward pass.

    Returns:
        ``(feats, labels)``: float (N, D) features and int64 (N,) labels, on the model's device.
    """
    n = data_size("data", data)
    batch_size = checks.integer("batch_size", batch_size, min=1)
    fn = feature_fn(model)
    labels = data_labels(data)
    device = model_device(model, labels.device)
    modes = [(m, m.training) for m in model.modules()] if isinstance(model, nn.Module) else []
    if isinstance(model, nn.Module):
        model.eval()
    chunks = []
    try:
        with torch.no_grad():
            for start in range(0, n, batch_size):
                idx = torch.arange(start, min(start + batch_size, n), device=labels.device)
                x = data_batch(data, idx).to(device)
                f = fn(x)  # (B, D)
                if not isinstance(f, torch.Tensor) or f.ndim != 2 or len(f) != len(idx):
                    shape = tuple(f.shape) if isinstance(f, torch.Tensor) else type(f).__name__
                    raise ValueError(f"model must map a batch of {len(idx)} to features (B, D); got "
                                     f"{shape} (wrap it, e.g. lambda x: model(x).flatten(1))")
                chunks.append(f.float())
    finally:
        for m, training in modes:
            m.train(training)
    if not chunks:
        raise ValueError("data has no samples")
    return torch.cat(chunks), labels.to(device)


def check_probe_inputs(train_feats: torch.Tensor, train_labels: torch.Tensor,
                       test_feats: torch.Tensor, test_labels: torch.Tensor) -> int:
    """Validate the four probe tensors; return the number of classes (max label + 1)."""
    checks.tensor("train_feats", train_feats, ndim=2, dtypes="float")
    checks.tensor("test_feats", test_feats, ndim=2, dtypes="float")
    checks.tensor("train_labels", train_labels, ndim=1, dtypes="int")
    checks.tensor("test_labels", test_labels, ndim=1, dtypes="int")
    if len(train_feats) != len(train_labels):
        raise ValueError(f"train_feats has {len(train_feats)} rows but train_labels has "
                         f"{len(train_labels)}; they must match")
    if len(test_feats) != len(test_labels):
        raise ValueError(f"test_feats has {len(test_feats)} rows but test_labels has "
                         f"{len(test_labels)}; they must match")
    if len(train_feats) == 0 or len(test_feats) == 0:
        raise ValueError(f"train_feats and test_feats must be non-empty; got {len(train_feats)} and "
                         f"{len(test_feats)} rows")
    if train_feats.shape[1] != test_feats.shape[1]:
        raise ValueError(f"train_feats and test_feats must have the same feature size; got "
                         f"{train_feats.shape[1]} and {test_feats.shape[1]}")
    for name, lab in (("train_labels", train_labels), ("test_labels", test_labels)):
        if int(lab.min()) < 0:
            raise ValueError(f"{name} contains {int(lab.min())}; labels must be >= 0 (drop unlabeled "
                             f"samples, label -1, first)")
    if not (torch.isfinite(train_feats).all() and torch.isfinite(test_feats).all()):
        raise ValueError("train_feats/test_feats contain NaN or inf values")
    return int(max(int(train_labels.max()), int(test_labels.max()))) + 1
