"""RotNet: rotate each image by 0, 90, 180 or 270 degrees and predict which.

Gidaris, Singh & Komodakis (2018), "Unsupervised Representation Learning by Predicting Image
Rotations", https://arxiv.org/abs/1803.07728.

    x ─ rotate by k * 90 ─ backbone ─> h (B, D) ─ head ─> 4 logits ─ cross-entropy(k)

To tell which way is up the network must recognise objects and their canonical pose. (Classes
that look the same rotated - a round blob, a 0 - cannot be solved, which caps the accuracy.)
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from sslkit import checks, heads, pretext
from sslkit.methods.base import Method, default_backbone, keep_layout, make_config
from sslkit.methods.registry import register


@dataclass
class RotationConfig:
    # Feed all four rotations of every image in the same batch (4B images), as the paper does (it
    # reports this works better than one random rotation per image). False: one random rotation each.
    all_rotations: bool = True
    # Hidden width of the classifier head; 0 = a linear head. A small MLP keeps the most
    # rotation-specific computation out of the backbone's last layer.
    head_hidden: int = 256

    def __post_init__(self) -> None:
        checks.boolean("all_rotations", self.all_rotations)
        checks.integer("head_hidden", self.head_hidden, min=0)


class Rotation(Method):
    name = "rotation"
    kinds = ("image",)
    default_lr = 1e-3  # AdamW; paper: SGD lr 0.1

    def __init__(self, backbone: nn.Module, config: RotationConfig) -> None:
        super().__init__(backbone)
        self.config = config
        d = backbone.embed_dim
        self.head = heads.mlp([d, config.head_hidden, 4] if config.head_hidden else [d, 4])

    def training_step(self, batch: torch.Tensor) -> dict[str, torch.Tensor]:
        x = checks.images("batch", batch, min_batch=2)                                            # (B, C, H, W)
        if x.shape[-1] != x.shape[-2]:
            raise ValueError(f"batch has shape {tuple(x.shape)}; rotation needs square images")
        if self.config.all_rotations:
            k = torch.arange(4, device=x.device).repeat_interleave(x.shape[0])   # (4B,)
            rotated = pretext.rotate_by(x.repeat(4, 1, 1, 1), k)           # (4B, C, H, W)
        else:
            rotated, k = pretext.rotate(x)                                 # (B, C, H, W), (B,)
        rotated = keep_layout(rotated, x)                                  # channels-last stays so
        logits = self.head(self.backbone.forward_features(rotated))        # (4B or B, 4)
        loss = F.cross_entropy(logits, k)
        acc = (logits.detach().argmax(1) == k).float().mean()
        return {"loss": loss, "acc": acc}


@register(Rotation, "RotNet: predict which of 4 rotations was applied to an image")
def rotation(data: Any = None, backbone: Any = None, **config: Any) -> Rotation:
    """Rotation prediction (Gidaris et al. 2018). ``config``: see :class:`RotationConfig`."""
    cfg = make_config(RotationConfig, config)
    return Rotation(default_backbone(data, backbone, kind=Rotation.kinds[0]), cfg)
