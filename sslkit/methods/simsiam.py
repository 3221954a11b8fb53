"""SimSiam: a Siamese network with a predictor and a stop-gradient. No negatives, no EMA target.

Chen & He (2021), "Exploring Simple Siamese Representation Learning", https://arxiv.org/abs/2011.10566.

    v1 ─ backbone ─ projector ─> z1 ─ predictor ─> p1 ──┐
    v2 ─ backbone ─ projector ─> z2 ── stop-grad ───────┴─ -cos(p1, sg(z2))  (+ views swapped) / 2

The stop-gradient is what prevents collapse (paper section 4.1): set ``stop_gradient=False`` and
watch ``std`` (per-dim std of the normalised embeddings) fall to 0 within a few hundred steps.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from sslkit import checks, heads, losses
from sslkit.methods.base import (Method, Views, check_views, data_image_size,
                                 default_backbone, make_config, normalized_std, two_views,
                                 view_recipe_of, view_similarity)
from sslkit.methods.registry import register


@dataclass
class SimSiamConfig:
    # Projector width and output. Paper: 3 layers of 2048 for ResNet-50, 2 layers for its CIFAR
    # ResNet-18 (what we use), both with BN on the output; 512/512 suits our 128-512 wide backbones.
    proj_hidden: int = 512
    proj_dim: int = 512
    # Predictor bottleneck. Paper: 512 for a 2048-d output (a 4x bottleneck helps); 128 = 512 / 4.
    pred_hidden: int = 128
    # The paper's key ablation: without the stop-gradient the embeddings collapse.
    stop_gradient: bool = True
    # Augmentations: "auto" = "weak" <= 16 px, "cifar" <= 32 px (the paper's CIFAR runs), else the
    # "simclr" recipe the paper uses; or a recipe name or callable, as SimCLR.
    views: Views = "auto"

    def __post_init__(self) -> None:
        checks.integer("proj_hidden", self.proj_hidden, min=1)
        checks.integer("proj_dim", self.proj_dim, min=1)
        checks.integer("pred_hidden", self.pred_hidden, min=1)
        checks.choice("stop_gradient", self.stop_gradient, (True, False))
        check_views(self.views)


class SimSiam(Method):
    name = "simsiam"
    kinds = ("image", "spectrogram")
    default_lr = 1e-3  # AdamW; paper: SGD lr 0.05 x B/256 (predictor at a fixed lr)

    def __init__(self, backbone: nn.Module, config: SimSiamConfig) -> None:
        super().__init__(backbone)
        self.config = config
        self.projector = heads.projection_head(backbone.embed_dim, config.proj_hidden, config.proj_dim,
                                               num_layers=2, last_bn=True)
        self.predictor = heads.prediction_head(config.proj_dim, config.pred_hidden, config.proj_dim)

    @property
    def view_recipe(self) -> Any:
        """The augmentation of this run at this method's image size: a ``ViewRecipe`` (both views)."""
        return view_recipe_of(self.config.views, self.image_size, paper="simclr")

    def training_step(self, batch: torch.Tensor) -> dict[str, torch.Tensor]:
        x = checks.images("batch", batch, min_batch=2)                                          # (B, C, H, W)
        v1, v2 = two_views(x, self.config.views, paper="simclr")
        # Each view through the network as its own batch (BatchNorm statistics per view), as the
        # official code does.
        z1, z2 = (self.projector(self.backbone.forward_features(v)) for v in (v1, v2))  # (B, P) each
        p1, p2 = self.predictor(z1), self.predictor(z2)
        if self.config.stop_gradient:                                    # the stop-gradient: z is a
            z1, z2 = z1.detach(), z2.detach()                            # constant target here
        loss = 0.5 * (losses.negative_cosine(p1, z2, detach=False)
                      + losses.negative_cosine(p2, z1, detach=False))
        pos_sim, neg_sim = view_similarity(z1, z2)
        return {"loss": loss, "pos_sim": pos_sim, "neg_sim": neg_sim, "std": normalized_std(z1)}


@register(SimSiam, "SimSiam: predict the other view's embedding through a stop-gradient")
def simsiam(data: Any = None, backbone: Any = None, **config: Any) -> SimSiam:
    """SimSiam (Chen & He 2021). ``config``: see :class:`SimSiamConfig`."""
    cfg = make_config(SimSiamConfig, config)
    method = SimSiam(default_backbone(data, backbone, kind=SimSiam.kinds[0]), cfg)
    method.image_size = data_image_size(data)
    return method
