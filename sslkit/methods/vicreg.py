"""VICReg: invariance + variance + covariance regularisation of the two views' embeddings.

Bardes, Ponce & LeCun (2022), "VICReg: Variance-Invariance-Covariance Regularization for
Self-Supervised Learning", https://arxiv.org/abs/2105.04906.

    v1, v2 ─ backbone ─ expander ─> z1, z2 (B, P)
    loss = 25 * mse(z1, z2)                           invariance: the views agree
         + 25 * (v(z1) + v(z2)) / 2                   variance: every dim keeps std >= 1 (no collapse)
         +  1 * (c(z1) + c(z2))                       covariance: dims are decorrelated

The variance term is the mean of the two branches' hinges, as in the official code, whose weights
25 / 25 / 1 were tuned on it; the paper's eq. 6 prints the sum (``var_reduction="sum"``, the same
as doubling ``var_weight``). Each term is explicit, so it can be switched off (weight 0) to see
what it does.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from sslkit import checks, distributed, heads, losses
from sslkit.losses.non_contrastive import VAR_REDUCTIONS
from sslkit.methods.base import (Method, Views, check_views, data_image_size,
                                 default_backbone, make_config, normalized_std, two_views,
                                 view_recipe_of, view_similarity)
from sslkit.methods.registry import register


@dataclass
class VICRegConfig:
    # Expander. Paper: 3 layers of 8192; 512 keeps the (P, P) covariance cheap for our backbones.
    proj_hidden: int = 512
    proj_dim: int = 512
    # Term weights lambda, mu, nu. Paper: 25, 25, 1 (found by grid search with the official code's
    # variance form below; they transfer well).
    sim_weight: float = 25.0
    var_weight: float = 25.0
    cov_weight: float = 1.0
    # How the two branches' variance hinges combine: "mean" (official code, default) or "sum"
    # (the paper's eq. 6 as printed: twice the variance weight).
    var_reduction: str = "mean"
    # Augmentations: "auto" = "weak" <= 16 px, "cifar" <= 32 px (SimCLR's CIFAR-10 setting), else
    # "byol" (the paper uses BYOL's recipe); or a recipe name or callable, as SimCLR.
    views: Views = "auto"

    def __post_init__(self) -> None:
        checks.integer("proj_hidden", self.proj_hidden, min=1)
        checks.integer("proj_dim", self.proj_dim, min=1)
        checks.number("sim_weight", self.sim_weight, min=0.0)
        checks.number("var_weight", self.var_weight, min=0.0)
        checks.number("cov_weight", self.cov_weight, min=0.0)
        checks.choice("var_reduction", self.var_reduction, VAR_REDUCTIONS)
        check_views(self.views)


class VICReg(Method):
    name = "vicreg"
    kinds = ("image", "spectrogram")
    default_lr = 1e-3  # AdamW; paper: LARS lr 0.2 x B/256

    def __init__(self, backbone: nn.Module, config: VICRegConfig) -> None:
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
        # Variance and covariance are batch statistics: compute them on the *global* batch.
        z1, z2 = distributed.gather(z1), distributed.gather(z2)          # (B_global, P)
        c = self.config
        terms = losses.vicreg_terms(z1, z2, c.sim_weight, c.var_weight, c.cov_weight, c.var_reduction)
        pos_sim, neg_sim = view_similarity(z1, z2)
        return {"loss": terms["loss"], "invariance": terms["invariance"].detach(),
                "variance": terms["variance"].detach(), "covariance": terms["covariance"].detach(),
                "pos_sim": pos_sim, "neg_sim": neg_sim, "std": normalized_std(z1)}


@register(VICReg, "VICReg: invariance + variance + covariance terms on the two views' embeddings")
def vicreg(data: Any = None, backbone: Any = None, **config: Any) -> VICReg:
    """VICReg (Bardes et al. 2022). ``config``: see :class:`VICRegConfig`."""
    cfg = make_config(VICRegConfig, config)
    method = VICReg(default_backbone(data, backbone, kind=VICReg.kinds[0]), cfg)
    method.image_size = data_image_size(data)
    return method
