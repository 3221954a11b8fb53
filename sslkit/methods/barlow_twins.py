"""Barlow Twins: make the cross-correlation matrix of the two views' embeddings the identity.

Zbontar, Jing, Misra, LeCun & Deny (2021), "Barlow Twins: Self-Supervised Learning via Redundancy
Reduction", https://arxiv.org/abs/2103.03230.

    v1, v2 ─ backbone ─ projector ─> z1, z2 (B, P) ─ standardise over the batch ─> C = z1n.T z2n / B
    loss = sum_i (1 - C_ii)^2  +  lambda * sum_{i != j} C_ij^2

The diagonal term makes each dimension invariant to the augmentation; the off-diagonal term
decorrelates the dimensions (redundancy reduction), which rules out collapse without negatives.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from sslkit import checks, distributed, heads, losses
from sslkit.methods.base import (Method, Views, check_views, data_image_size,
                                 default_backbone, make_config, normalized_std, two_views,
                                 view_recipe_of, view_similarity)
from sslkit.methods.registry import register


@dataclass
class BarlowTwinsConfig:
    # Projector ("expander"). Paper: 3 layers of 8192 (accuracy still grows with width); 512 keeps
    # the (P, P) correlation matrix cheap for our 128-512 wide backbones.
    proj_hidden: int = 512
    proj_dim: int = 512
    # Weight of the off-diagonal term. Paper: 5.1e-3 for P = 8192; it balances P diagonal against
    # P (P - 1) off-diagonal entries, so the tuned value moves little with P (we keep 5e-3).
    lambda_: float = 5e-3
    # Augmentations: "auto" = "weak" <= 16 px, "cifar" <= 32 px (SimCLR's CIFAR-10 setting), else
    # "byol" (the paper uses BYOL's recipe); or a recipe name or callable, as SimCLR.
    views: Views = "auto"

    def __post_init__(self) -> None:
        checks.integer("proj_hidden", self.proj_hidden, min=1)
        checks.integer("proj_dim", self.proj_dim, min=1)
        checks.number("lambda_", self.lambda_, min=0.0)
        check_views(self.views)


class BarlowTwins(Method):
    name = "barlow_twins"
    kinds = ("image", "spectrogram")
    default_lr = 1e-3  # AdamW; paper: LARS lr 0.2 (weights) at batch 2048

    def __init__(self, backbone: nn.Module, config: BarlowTwinsConfig) -> None:
        super().__init__(backbone)
        self.config = config
        self.projector = heads.projection_head(backbone.embed_dim, config.proj_hidden, config.proj_dim,
                                               num_layers=3)  # 3 layers as the paper

    @property
    def view_recipe(self) -> Any:
        """The augmentation of this run at this method's image size: a ``ViewRecipe``, or
        ``[view 1, view 2]`` when they differ (BYOL's recipe above 32 px)."""
        return view_recipe_of(self.config.views, self.image_size, paper="byol")

    def training_step(self, batch: torch.Tensor) -> dict[str, torch.Tensor]:
        x = checks.images("batch", batch, min_batch=2)                                          # (B, C, H, W)
        v1, v2 = two_views(x, self.config.views, paper="byol")
        # Each view through the network as its own batch (BatchNorm statistics per view), as the
        # official code does.
        z1, z2 = (self.projector(self.backbone.forward_features(v)) for v in (v1, v2))  # (B, P) each
        # The batch statistics and the correlation matrix must come from the *global* batch.
        z1, z2 = distributed.gather(z1), distributed.gather(z2)          # (B_global, P)
        loss = losses.barlow_twins(z1, z2, lambda_=self.config.lambda_)
        pos_sim, neg_sim = view_similarity(z1, z2)
        return {"loss": loss, "pos_sim": pos_sim, "neg_sim": neg_sim, "std": normalized_std(z1)}


@register(BarlowTwins, "Barlow Twins: drive the views' cross-correlation matrix to the identity")
def barlow_twins(data: Any = None, backbone: Any = None, **config: Any) -> BarlowTwins:
    """Barlow Twins (Zbontar et al. 2021). ``config``: see :class:`BarlowTwinsConfig`."""
    cfg = make_config(BarlowTwinsConfig, config)
    method = BarlowTwins(default_backbone(data, backbone, kind=BarlowTwins.kinds[0]), cfg)
    method.image_size = data_image_size(data)
    return method
