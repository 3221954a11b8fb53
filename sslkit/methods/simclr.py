"""SimCLR: contrast two views of each image against every other image in the batch.

Chen, Kornblith, Norouzi & Hinton (2020), "A Simple Framework for Contrastive Learning of Visual
Representations", https://arxiv.org/abs/2002.05709.

    x ─ views ─> v1, v2 ─ backbone ─> h1, h2 ─ projector ─> z1, z2 ─ NT-Xent(z1, z2, tau)

Each z1[i] must pick out its partner z2[i] among the 2B - 1 other embeddings of the (global) batch;
the other 2B - 2 are the negatives. Evaluation uses h (before the projector), as in the paper.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from sslkit import checks, distributed, heads, losses
from sslkit.methods.base import (Method, Views, check_views, data_image_size,
                                 default_backbone, make_config, normalized_std, two_views,
                                 view_recipe_of, view_similarity)
from sslkit.methods.registry import register


@dataclass
class SimCLRConfig:
    # Projector width. Paper: 2048 for ResNet-50 (hidden = feature width); our backbones have
    # 128-512 features, so 512 keeps the head a small fraction of the model.
    proj_hidden: int = 512
    # Projector output size. Paper: 128 (the loss works on this space, evaluation does not).
    proj_dim: int = 128
    # NT-Xent temperature. Paper: 0.5 for CIFAR-10 at batch 512 (0.1 for ImageNet at batch 4096);
    # our batches are small like CIFAR's, so 0.5.
    temperature: float = 0.5
    # Augmentations: "auto" = by image size (sslkit.pretext.auto_views): "weak" <= 16 px (digits; colour
    # jitter kept), the paper's CIFAR-10 setting "cifar" <= 32 px, its ImageNet "simclr" recipe above;
    # or "simclr", "cifar", "byol", "weak", or a callable f(x, generator=None) -> one view.
    views: Views = "auto"

    def __post_init__(self) -> None:
        checks.integer("proj_hidden", self.proj_hidden, min=1)
        checks.integer("proj_dim", self.proj_dim, min=1)
        checks.number("temperature", self.temperature, min=0.0, min_open=True)
        check_views(self.views)


class SimCLR(Method):
    name = "simclr"
    kinds = ("image", "spectrogram")
    default_lr = 1e-3  # AdamW; paper: LARS with lr 0.3 x B/256 at batch 4096

    def __init__(self, backbone: torch.nn.Module, config: SimCLRConfig) -> None:
        super().__init__(backbone)
        self.config = config
        self.projector = heads.projection_head(backbone.embed_dim, config.proj_hidden, config.proj_dim)

    @property
    def view_recipe(self) -> Any:
        """The augmentation of this run at this method's image size: a ``ViewRecipe`` (both views)."""
        return view_recipe_of(self.config.views, self.image_size, paper="simclr")

    def training_step(self, batch: torch.Tensor) -> dict[str, torch.Tensor]:
        x = checks.images("batch", batch, min_batch=2)                                          # (B, C, H, W)
        v1, v2 = two_views(x, self.config.views, paper="simclr")
        # One pass over both views: BatchNorm normalises over all 2B views together - the paper's
        # global BN (its official code concatenates the views along the batch the same way).
        z = self.projector(self.backbone.forward_features(torch.cat([v1, v2])))  # (2B, P)
        z1, z2 = z.chunk(2)                                              # (B, P) each
        # Under DDP every image of the *global* batch is a negative (gather keeps gradients).
        z1, z2 = distributed.gather(z1), distributed.gather(z2)          # (B_global, P)
        loss = losses.nt_xent(z1, z2, temperature=self.config.temperature)
        pos_sim, neg_sim = view_similarity(z1, z2)
        return {"loss": loss, "pos_sim": pos_sim, "neg_sim": neg_sim, "std": normalized_std(z1)}


@register(SimCLR, "SimCLR: contrast two views of each image against the rest of the batch (NT-Xent)")
def simclr(data: Any = None, backbone: Any = None, **config: Any) -> SimCLR:
    """SimCLR (Chen et al. 2020). ``config``: see :class:`SimCLRConfig`."""
    cfg = make_config(SimCLRConfig, config)
    method = SimCLR(default_backbone(data, backbone, kind=SimCLR.kinds[0]), cfg)
    method.image_size = data_image_size(data)
    return method
