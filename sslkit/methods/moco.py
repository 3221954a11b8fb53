"""MoCo v2: contrast each query with its key and a queue of keys from past batches.

He, Fan, Wu, Xie & Girshick (2020), "Momentum Contrast for Unsupervised Visual Representation
Learning", https://arxiv.org/abs/1911.05722; v2 (MLP head, blur, cosine lr): Chen, Fan, Girshick & He
(2020), "Improved Baselines with Momentum Contrastive Learning", https://arxiv.org/abs/2003.04297.

    v1 ─ backbone ─ projector ─────────> q ─┐
    v2 ─ key encoder (EMA, no grad) ───> k ─┴─ InfoNCE(q, k, negatives = queue) ; queue <- k

The queue decouples the number of negatives from the batch size; the key encoder moves slowly
(momentum m) so that keys from the last few hundred steps stay comparable.

When the queue changes: keys are enqueued inside ``training_step`` (after the loss is built on a
copy of the queue, as in the official code), only in training mode (``method.train()``), so an
evaluation pass leaves the queue alone. The key encoder's EMA update is in ``on_step_end``.
Not implemented: shuffle-BN (it needs several devices); our backbones are small and the effect is
minor on short runs.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from sslkit import checks, distributed, heads, losses
from sslkit.methods.base import (Method, Views, check_images, check_views, default_backbone,
                                 ema_update, frozen_copy, make_config, normalized_std, two_views)
from sslkit.methods.registry import register


@dataclass
class MoCoConfig:
    # Projector (v2's MLP head). Paper: 2048 hidden, 128 out for ResNet-50; 512 hidden suits our
    # 128-512 wide backbones.
    proj_hidden: int = 512
    proj_dim: int = 128
    # Number of queued negative keys. Paper: 65536 for ImageNet's 1.28M images. Tiny datasets
    # (digits: 1.8k images) need a queue well below the dataset size, or it fills with stale keys
    # of the very images being queried (false negatives); 1024 also suits CIFAR-scale data.
    queue_size: int = 1024
    # Key-encoder momentum. Paper: 0.999 over 200 epochs x 5000 steps; our runs are a few thousand
    # steps at most, so a faster-moving key encoder (0.99) keeps keys in step with the queries.
    momentum: float = 0.99
    # InfoNCE temperature. Paper (v2): 0.2 (v1 used 0.07).
    temperature: float = 0.2
    # Augmentations: "auto" = "weak" for <= 16 px, "simclr" (v2 uses the SimCLR recipe) above.
    views: Views = "auto"

    def __post_init__(self) -> None:
        checks.integer("proj_hidden", self.proj_hidden, min=1)
        checks.integer("proj_dim", self.proj_dim, min=1)
        checks.integer("queue_size", self.queue_size, min=1)
        checks.number("momentum", self.momentum, min=0.0, max=1.0)
        checks.number("temperature", self.temperature, min=0.0, min_open=True)
        check_views(self.views)


class MoCo(Method):
    name = "moco"
    kinds = ("image", "spectrogram")
    default_lr = 1e-3  # AdamW; paper: SGD lr 0.03 at batch 256

    queue: torch.Tensor
    queue_ptr: torch.Tensor

    def __init__(self, backbone: nn.Module, config: MoCoConfig) -> None:
        super().__init__(backbone)
        self.config = config
        self.projector = heads.projection_head(backbone.embed_dim, config.proj_hidden, config.proj_dim)
        # The key encoder: a copy of backbone + projector that only follows them by EMA.
        self.key_backbone = frozen_copy(backbone)
        self.key_projector = frozen_copy(self.projector)
        # Buffers, so they move with .to(device) and are saved in checkpoints. The queue starts as
        # random unit vectors (paper) and is overwritten within queue_size / B steps.
        self.register_buffer("queue", F.normalize(torch.randn(config.queue_size, config.proj_dim), dim=1))
        self.register_buffer("queue_ptr", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def enqueue(self, keys: torch.Tensor) -> None:
        """Write ``keys`` (N, P) over the oldest queue entries (a ring buffer; the pointer wraps)."""
        keys = keys[-self.config.queue_size:]                           # only the newest fit
        n, k = keys.shape[0], self.queue.shape[0]
        idx = (self.queue_ptr + torch.arange(n, device=keys.device)) % k  # (N,)
        self.queue[idx] = keys.to(self.queue.dtype)
        self.queue_ptr.copy_((self.queue_ptr + n) % k)

    def training_step(self, batch: torch.Tensor) -> dict[str, torch.Tensor]:
        x = check_images(batch)                                          # (B, C, H, W)
        v1, v2 = two_views(x, self.config.views, paper="simclr")
        q = F.normalize(self.projector(self.backbone.forward_features(v1)), dim=1)   # (B, P)
        with torch.no_grad():                                            # keys: no gradient
            k = F.normalize(self.key_projector(self.key_backbone.forward_features(v2)), dim=1)
        # A copy: the queue is changed in place below, and q's gradient needs the old values.
        negatives = self.queue.clone()                                   # (K, P)
        loss = losses.info_nce(q, k, negatives=negatives, temperature=self.config.temperature)
        if self.training:
            self.enqueue(distributed.gather(k))                          # every rank's keys
        return {"loss": loss,
                "pos_sim": (q * k).sum(1).mean().detach(),               # cos(q, k+)
                "neg_sim": (q @ negatives.T).mean().detach(),            # cos(q, queue)
                "std": normalized_std(q)}

    def on_step_end(self, step: int, total_steps: int) -> None:
        """After optimiser step ``step`` (1..total_steps, steps done): the key encoder's EMA update."""
        checks.integer("step", step, min=1)
        # Key encoder <- m * key encoder + (1 - m) * query encoder (constant m, as in the paper,
        # so the update does not depend on the step).
        ema_update(self.key_backbone, self.backbone, self.config.momentum)
        ema_update(self.key_projector, self.projector, self.config.momentum)


@register("moco", "MoCo v2: InfoNCE against a queue of keys from a momentum (EMA) encoder")
def moco(data: Any = None, backbone: Any = None, **config: Any) -> MoCo:
    """MoCo v2 (He et al. 2020; Chen et al. 2020). ``config``: see :class:`MoCoConfig`."""
    cfg = make_config(MoCoConfig, config)
    return MoCo(default_backbone(data, backbone, kind="image"), cfg)
