"""BYOL: predict a slowly moving target network's embedding of the other view. No negatives.

Grill et al. (2020), "Bootstrap Your Own Latent: A New Approach to Self-Supervised Learning",
https://arxiv.org/abs/2006.07733.

    v1 ─ backbone ─ projector ─ predictor ─> p1 ──┐
    v2 ─ target backbone ─ target projector ─> t2 ┴─ -cos(p1, t2)   (+ the same with views swapped)

The target is an exponential moving average (EMA) of the online network and gets no gradient.
Its momentum follows a cosine schedule from ``base_momentum`` to 1 (section 3.2):
``tau_k = 1 - (1 - tau_base) (cos(pi k / K) + 1) / 2``. The predictor and the slow target are what
keep the embeddings from collapsing (paper table 5: tau = 0 gives 0.3% top-1).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from sslkit import checks, heads, losses
from sslkit.methods.base import (Method, Views, check_views, cosine_momentum,
                                 data_image_size, default_backbone, ema_update, frozen_copy,
                                 make_config, normalized_std, two_views, view_recipe_of,
                                 view_similarity)
from sslkit.methods.registry import register


@dataclass
class BYOLConfig:
    # Projector. Paper: 4096 hidden, 256 out for ResNet-50; 512/128 for our 128-512 wide backbones.
    proj_hidden: int = 512
    proj_dim: int = 128
    # Predictor hidden width. Paper: 4096 (same as projector); 512 here.
    pred_hidden: int = 512
    # Target momentum at the first step, rising to 1 by a cosine. Paper: 0.996 over 1000 epochs; our runs
    # are short, so a faster-moving target (0.99) lets learning start within a few hundred steps.
    base_momentum: float = 0.99
    # Augmentations: "auto" = "weak" <= 16 px, "cifar" <= 32 px (SimCLR's CIFAR-10 setting: no blur),
    # else the paper's asymmetric "byol" recipe; or a recipe name or callable, as SimCLR.
    views: Views = "auto"

    def __post_init__(self) -> None:
        checks.integer("proj_hidden", self.proj_hidden, min=1)
        checks.integer("proj_dim", self.proj_dim, min=1)
        checks.integer("pred_hidden", self.pred_hidden, min=1)
        checks.number("base_momentum", self.base_momentum, min=0.0, max=1.0)
        check_views(self.views)


class BYOL(Method):
    name = "byol"
    kinds = ("image", "spectrogram")
    default_lr = 1e-3  # AdamW; paper: LARS lr 0.2 x B/256

    def __init__(self, backbone: nn.Module, config: BYOLConfig) -> None:
        super().__init__(backbone)
        self.config = config
        self.projector = heads.projection_head(backbone.embed_dim, config.proj_hidden, config.proj_dim)
        self.predictor = heads.prediction_head(config.proj_dim, config.pred_hidden, config.proj_dim)
        # The target: copies that follow the online network by EMA only (requires_grad=False).
        self.target_backbone = frozen_copy(backbone)
        self.target_projector = frozen_copy(self.projector)
        self.tau = config.base_momentum      # last momentum used (logged), set by on_step_end

    @property
    def view_recipe(self) -> Any:
        """The augmentation of this run at this method's image size: a ``ViewRecipe``, or
        ``[view 1, view 2]`` when they differ (BYOL's recipe above 32 px)."""
        return view_recipe_of(self.config.views, self.image_size, paper="byol")

    def training_step(self, batch: torch.Tensor) -> dict[str, torch.Tensor]:
        x = checks.images("batch", batch, min_batch=2)                                          # (B, C, H, W)
        v1, v2 = two_views(x, self.config.views, paper="byol")
        # Each view goes through the networks as its own batch, as in the official code: BatchNorm
        # normalises each view with its own statistics (one pass over both would mix them).
        p1, p2 = (self.predictor(self.projector(self.backbone.forward_features(v)))
                  for v in (v1, v2))                                     # (B, P) each
        with torch.no_grad():                                            # the target: no gradient
            t1, t2 = (self.target_projector(self.target_backbone.forward_features(v)) for v in (v1, v2))
        # Symmetric loss: each view's prediction regresses the *other* view's target.
        # (negative_cosine = -cos; the paper's 2 - 2 cos has the same gradient up to a factor 2.)
        loss = losses.negative_cosine(p1, t2) + losses.negative_cosine(p2, t1)
        pos_sim, neg_sim = view_similarity(p1, t2)
        return {"loss": loss, "pos_sim": pos_sim, "neg_sim": neg_sim, "std": normalized_std(p1),
                "tau": torch.full((), self.tau, device=x.device)}   # a fill: no host-to-device copy

    def on_step_end(self, step: int, total_steps: int) -> None:
        """After optimiser step ``step`` (1..total_steps, steps done): the target's EMA update."""
        step = checks.integer("step", step, min=1)
        # Target <- tau_k * target + (1 - tau_k) * online; the k-th update (k = step - 1 = 0, 1, ...)
        # uses tau_k from the cosine schedule: base_momentum after the first step, -> 1 at the end.
        self.tau = cosine_momentum(step - 1, total_steps, self.config.base_momentum)
        ema_update(self.target_backbone, self.backbone, self.tau)
        ema_update(self.target_projector, self.projector, self.tau)


@register(BYOL, "BYOL: predict an EMA target network's embedding of the other view (no negatives)")
def byol(data: Any = None, backbone: Any = None, **config: Any) -> BYOL:
    """BYOL (Grill et al. 2020). ``config``: see :class:`BYOLConfig`."""
    cfg = make_config(BYOLConfig, config)
    method = BYOL(default_backbone(data, backbone, kind=BYOL.kinds[0]), cfg)
    method.image_size = data_image_size(data)
    return method
