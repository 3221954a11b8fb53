"""The one interface every SSL method implements.

    method = sslkit.create("simclr", data=ds)        # an nn.Module
    out = method.training_step(batch)                  # {"loss": tensor, ...logged terms}
    out["loss"].backward(); optimizer.step()
    method.on_step_end(step, total_steps)              # EMA targets, queues, centres...
    feats = method.embed(x)                            # (B, D) features for evaluation

``batch`` is what ``Dataset.batch(idx)`` returns: float images in [0, 1] (B, C, H, W), clips
(B, T, C, H, W), token ids (B, L) or signals (B, C, T) - already on the method's device. Methods make
their own views/masks on that device with ``sslkit.pretext``.
"""
from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn


class Method(nn.Module):
    """Base class. Subclasses set ``name``/``kinds`` and implement ``training_step``."""

    name: ClassVar[str] = "method"
    # Which dataset kinds the method trains on ("image", "text", "signal", "clip").
    kinds: ClassVar[tuple[str, ...]] = ("image",)
    # Sensible default learning rate for the engine's optimiser (AdamW unless the method says otherwise).
    default_lr: ClassVar[float] = 1e-3

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone

    @property
    def embed_dim(self) -> int:
        """Size D of the features ``embed`` returns."""
        return int(self.backbone.embed_dim)

    def training_step(self, batch: torch.Tensor) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def forward(self, batch: torch.Tensor) -> dict[str, torch.Tensor]:
        # forward == training_step, so DistributedDataParallel(method)(batch) syncs gradients.
        return self.training_step(batch)

    @torch.no_grad()
    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Features for evaluation: the backbone's ``forward_features``, (B, D)."""
        return self.backbone.forward_features(x)

    def on_step_end(self, step: int, total_steps: int) -> None:
        """Called by the engine after each optimiser step (EMA/queue/centre updates)."""
