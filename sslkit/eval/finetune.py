"""Fine-tuning: train a copy of the encoder plus a linear head end to end with labels.

Where the linear probe freezes the encoder, fine-tuning lets the labels reshape it (the second
standard SSL evaluation, e.g. SimCLR Sec. 6, MAE Sec. 4). Starting from a random-init backbone the
same loop is plain supervised training - the "supervised on the same labels" baseline.
"""
from __future__ import annotations

import copy
import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from sslkit import checks
from sslkit.eval.features import Data, data_batch, data_labels, data_size, data_to, model_device


def backbone_of(model: Any, name: str = "model") -> nn.Module:
    """The backbone module of a Method (``.backbone``) or the backbone itself."""
    if isinstance(model, nn.Module) and hasattr(model, "forward_features"):
        return model
    inner = getattr(model, "backbone", None)
    if isinstance(inner, nn.Module) and hasattr(inner, "forward_features"):
        return inner
    raise ValueError(f"{name} must be a Method or a backbone (an nn.Module with forward_features "
                     f"and embed_dim); got {type(model).__name__}")


class Classifier(nn.Module):
    """Backbone features -> linear head -> class logits."""

    def __init__(self, backbone: nn.Module, num_classes: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = nn.Linear(int(backbone.embed_dim), num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone.forward_features(x)  # (B, D)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_features(x))  # (B, C)


def train_classifier(backbone: nn.Module, train_data: Data, num_classes: int, *, steps: int,
                     lr: float, weight_decay: float, batch_size: int, seed: int,
                     augment: Callable[[torch.Tensor], torch.Tensor] | None = None) -> Classifier:
    """Train ``Classifier(backbone)`` in place on ``train_data`` for ``steps`` AdamW steps."""
    model = Classifier(backbone, num_classes)
    device = model_device(backbone, data_labels(train_data).device)
    model.to(device).train()
    train_data = data_to(train_data, device)  # moved once; every batch is then indexed on the device
    labels = data_labels(train_data)
    n = len(labels)
    batch_size = min(batch_size, n)
    g = torch.Generator().manual_seed(seed)  # CPU generator: same batches on every device
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    # Cosine decay to 0: the usual fine-tuning schedule, no warm-up needed at these small scales.
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * s / steps)))
    chunk = 64  # batches whose indices are drawn on the CPU together and copied in one transfer
    with torch.enable_grad():
        for step in range(steps):
            if step % chunk == 0:
                order = torch.stack([torch.randperm(n, generator=g)[:batch_size]
                                     for _ in range(min(chunk, steps - step))]).to(device)  # (chunk, B)
            idx = order[step % chunk]                                   # (B,) on the device
            x = data_batch(train_data, idx)  # (B, ...)
            if augment is not None:
                x = augment(x)
            loss = F.cross_entropy(model(x), labels[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    return model


def accuracy(model: nn.Module, data: Data, batch_size: int = 512) -> float:
    """Accuracy (in [0, 1]) of a classifier ``model(x) -> logits`` on ``data``, in eval mode."""
    device = model_device(model, data_labels(data).device)
    data = data_to(data, device)  # moved once, not batch by batch
    labels = data_labels(data)
    model.eval()
    correct = torch.zeros((), dtype=torch.long, device=device)  # summed on the device: one sync at the end
    with torch.no_grad():
        for start in range(0, len(labels), batch_size):
            idx = torch.arange(start, min(start + batch_size, len(labels)), device=device)
            logits = model(data_batch(data, idx))  # (B, C)
            correct += (logits.argmax(1) == labels[idx]).sum()
    return int(correct) / len(labels)


def fine_tune(method_or_backbone: Any, train_data: Data, test_data: Data, epochs: int | None = None,
              steps: int | None = None, lr: float = 1e-3, weight_decay: float = 1e-4,
              batch_size: int = 256, seed: int = 0,
              augment: Callable[[torch.Tensor], torch.Tensor] | None = None) -> float:
    """Test accuracy (in [0, 1]) after fine-tuning a *copy* of the backbone with a new linear head.

    The original model is not modified. Training uses AdamW with cosine decay and cross-entropy on
    random mini-batches of ``train_data`` (on the model's device), then accuracy on ``test_data``.

    Args:
        method_or_backbone: a Method (its ``.backbone`` is copied) or a backbone.
        train_data, test_data: Datasets or ``(x, labels)`` pairs with labels >= 0.
        epochs / steps: training length; give at most one (default: 200 steps). An epoch is
            ``ceil(N / batch_size)`` steps.
        lr: AdamW learning rate; 1e-3 suits training small ConvNets from scratch or from SSL weights.
        weight_decay: AdamW weight decay.
        batch_size: mini-batch size (capped at the number of training samples).
        seed: seeds the head's initialisation and the batch order.
        augment: optional ``x -> x`` applied to each training batch (e.g. a ``sslkit.pretext`` view).
    """
    backbone = backbone_of(method_or_backbone, "method_or_backbone")
    n = data_size("train_data", train_data)
    data_size("test_data", test_data)
    batch_size = checks.integer("batch_size", batch_size, min=1)
    if epochs is not None and steps is not None:
        raise ValueError(f"give epochs={epochs!r} or steps={steps!r}, not both")
    if epochs is not None:
        steps = checks.integer("epochs", epochs, min=1) * math.ceil(n / min(batch_size, n))
    steps = 200 if steps is None else checks.integer("steps", steps, min=1)
    lr = checks.number("lr", lr, min=0, min_open=True)
    weight_decay = checks.number("weight_decay", weight_decay, min=0)
    seed = checks.integer("seed", seed)
    train_labels, test_labels = data_labels(train_data), data_labels(test_data)
    for name, lab in (("train_data", train_labels), ("test_data", test_labels)):
        if len(lab) and int(lab.min()) < 0:
            raise ValueError(f"{name} has unlabeled samples (label -1); fine-tune on labelled data")
    if n < 2:
        raise ValueError(f"train_data needs at least 2 samples to fine-tune (BatchNorm); got {n}")
    num_classes = int(max(int(train_labels.max()), int(test_labels.max()))) + 1
    with torch.random.fork_rng(devices=[]):  # seed the head init without touching global RNG
        torch.manual_seed(seed)
        model = train_classifier(copy.deepcopy(backbone), train_data, num_classes, steps=steps,
                                 lr=lr, weight_decay=weight_decay, batch_size=batch_size, seed=seed,
                                 augment=augment)
    return accuracy(model, test_data)
