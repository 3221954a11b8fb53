"""MoCo v2: contrast each query with its key and a queue of keys from past batches.

He, Fan, Wu, Xie & Girshick (2020), "Momentum Contrast for Unsupervised Visual Representation
Learning", https://arxiv.org/abs/1911.05722; v2 (MLP head, blur, cosine lr): Chen, Fan, Girshick & He
(2020), "Improved Baselines with Momentum Contrastive Learning", https://arxiv.org/abs/2003.04297.

    v1 ─ backbone ─ projector ─────────> q ─┐
    v2 ─ key encoder (EMA, no grad) ───> k ─┴─ InfoNCE(q, k, negatives = queue) ; queue <- k

The queue decouples the number of negatives from the batch size; the key encoder moves slowly
(momentum m) so that keys from the last few hundred steps stay comparable.

Shuffle-BN (paper section 3.3): with BatchNorm, a query and its own key normalised with the
statistics of the same images can "cheat" - the batch statistics leak which sample is which, and the
loss falls without good features. MoCo computes the keys on a shuffled batch split over 8 GPUs, each
with its own BatchNorm statistics. Here the key batch is shuffled (across processes under DDP, as the
official code) and split into ``key_bn_splits`` groups that are normalised separately
(:class:`SplitBatchNorm`, as MoCo's one-GPU CIFAR demo); then the keys are put back in order. The
key encoder is listed in ``local_batchnorm``, so ``sync_batchnorm`` never makes it a SyncBatchNorm.

When the queue changes: keys are enqueued inside ``training_step`` (after the loss is built on a
copy of the queue, as in the official code), only in training mode (``method.train()``), so an
evaluation pass leaves the queue alone. The key encoder's EMA update is in ``on_step_end``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as tdist
import torch.nn.functional as F
from torch import nn

from sslkit import checks, distributed, heads, losses
from sslkit.methods.base import (Method, Views, check_views, data_image_size, default_backbone,
                                 ema_update, frozen_copy, make_config, normalized_std, two_views,
                                 view_recipe_of)
from sslkit.methods.registry import register


class SplitBatchNorm(nn.modules.batchnorm._BatchNorm):
    """BatchNorm that, in training mode, normalises ``num_splits`` groups of the batch separately.

    Group s holds samples s, s + S, s + 2S, ... (S = ``num_splits``): viewing the (B, C, ...) input
    as (B / S, S * C, ...) turns each (group, channel) pair into a channel of its own, so one
    ``F.batch_norm`` call computes every group's statistics. The running statistics are the mean of
    the groups' updates. Parameters and buffers are those of a BatchNorm layer (same state dict).
    In eval mode (or with S = 1) it is plain BatchNorm.
    """

    def __init__(self, bn: nn.modules.batchnorm._BatchNorm, num_splits: int) -> None:
        super().__init__(bn.num_features, bn.eps, bn.momentum, bn.affine, bn.track_running_stats)
        self.load_state_dict(bn.state_dict())
        self.requires_grad_(any(p.requires_grad for p in bn.parameters()))
        self.num_splits = checks.integer("num_splits", num_splits, min=1)

    def _check_input_dim(self, x: torch.Tensor) -> None:
        if x.ndim < 2:
            raise ValueError(f"x must have shape (B, C, ...); got {tuple(x.shape)}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        S = self.num_splits
        if S == 1 or not self.training:
            return super().forward(x)
        B, C = x.shape[:2]
        if B % S or B // S < 2:
            raise ValueError(f"a batch of {B} cannot be split into key_bn_splits={S} BatchNorm groups of "
                             f"at least 2 samples; use a batch size divisible by {S} (>= {2 * S}) "
                             f"or another key_bn_splits")
        track = self.track_running_stats
        momentum = 0.0 if self.momentum is None else self.momentum
        if track:
            self.num_batches_tracked.add_(1)
            if self.momentum is None:   # cumulative average, as nn.BatchNorm (reads the count: a sync)
                momentum = 1.0 / float(self.num_batches_tracked)
        mean = self.running_mean.repeat(S) if track else None            # (S*C,)
        var = self.running_var.repeat(S) if track else None
        weight = self.weight.repeat(S) if self.affine else None
        bias = self.bias.repeat(S) if self.affine else None
        y = F.batch_norm(x.reshape(B // S, S * C, *x.shape[2:]), mean, var, weight, bias, True,
                         momentum, self.eps)                             # (B/S, S*C, ...)
        if track:
            with torch.no_grad():
                self.running_mean.copy_(mean.view(S, C).mean(0))
                self.running_var.copy_(var.view(S, C).mean(0))
        return y.reshape(x.shape)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, num_splits={self.num_splits}"


def split_batchnorm(module: nn.Module, num_splits: int) -> nn.Module:
    """``module`` with every BatchNorm layer replaced by a :class:`SplitBatchNorm` of ``num_splits``
    groups (in place; a SplitBatchNorm already there just gets the new count)."""
    for name, child in module.named_children():
        if isinstance(child, SplitBatchNorm):
            child.num_splits = num_splits
        elif isinstance(child, nn.modules.batchnorm._BatchNorm):
            setattr(module, name, SplitBatchNorm(child, num_splits))
        else:
            split_batchnorm(child, num_splits)
    return module


@dataclass
class MoCoConfig:
    # Projector (v2's MLP head: Linear-ReLU-Linear, no BatchNorm). Paper: 2048 hidden, 128 out for
    # ResNet-50; 512 hidden suits our 128-512 wide backbones.
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
    # BatchNorm groups of the shuffled key batch (over all processes): 8 simulates the paper's
    # 8 GPUs, as the official one-GPU demo does; 1 = one group (no shuffle-BN). The batch per
    # process must divide into groups of >= 2 images.
    key_bn_splits: int = 8
    # Symmetric loss: also use view 2 as the query and view 1 as the key and average the two
    # directions (the official CIFAR demo's option; like 2x the epochs of the asymmetric loss).
    symmetric: bool = False
    # Augmentations: "auto" = by image size ("weak" <= 16 px, "cifar" <= 32 px, else "simclr" - v2
    # uses SimCLR's recipe); or "simclr", "cifar", "byol", "weak", or a callable f(x, generator=None).
    views: Views = "auto"

    def __post_init__(self) -> None:
        checks.integer("proj_hidden", self.proj_hidden, min=1)
        checks.integer("proj_dim", self.proj_dim, min=1)
        checks.integer("queue_size", self.queue_size, min=1)
        checks.number("momentum", self.momentum, min=0.0, max=1.0)
        checks.number("temperature", self.temperature, min=0.0, min_open=True)
        checks.integer("key_bn_splits", self.key_bn_splits, min=1)
        checks.choice("symmetric", self.symmetric, (True, False))
        check_views(self.views)


class MoCo(Method):
    name = "moco"
    kinds = ("image", "spectrogram")
    default_lr = 1e-3  # AdamW; paper: SGD lr 0.03 at batch 256
    local_batchnorm = ("key_backbone", "key_projector")   # shuffle/split BN: never SyncBatchNorm

    queue: torch.Tensor
    queue_ptr: torch.Tensor

    def __init__(self, backbone: nn.Module, config: MoCoConfig) -> None:
        super().__init__(backbone)
        self.config = config
        self.projector = heads.projection_head(backbone.embed_dim, config.proj_hidden, config.proj_dim,
                                               batch_norm=False)
        # The key encoder: a copy of backbone + projector that only follows them by EMA, with
        # split BatchNorm (same parameters and buffers, so the EMA pairs them up as before).
        self.key_backbone = split_batchnorm(frozen_copy(backbone), config.key_bn_splits)
        self._key_splits = config.key_bn_splits
        self.key_projector = frozen_copy(self.projector)
        # Buffers, so they move with .to(device) and are saved in checkpoints. The queue starts as
        # random unit vectors (paper) and is overwritten within queue_size / B steps.
        self.register_buffer("queue", F.normalize(torch.randn(config.queue_size, config.proj_dim), dim=1))
        self.register_buffer("queue_ptr", torch.zeros((), dtype=torch.long))

    @property
    def view_recipe(self) -> Any:
        """The augmentation of this run: a ``ViewRecipe`` (both views) at this method's image size."""
        return view_recipe_of(self.config.views, self.image_size, paper="simclr")

    @torch.no_grad()
    def enqueue(self, keys: torch.Tensor) -> None:
        """Write ``keys`` (N, P) over the oldest queue entries (a ring buffer; the pointer wraps)."""
        keys = keys[-self.config.queue_size:]                           # only the newest fit
        n, k = keys.shape[0], self.queue.shape[0]
        idx = (self.queue_ptr + torch.arange(n, device=keys.device)) % k  # (N,)
        self.queue[idx] = keys.to(self.queue.dtype)
        self.queue_ptr.copy_((self.queue_ptr + n) % k)

    @torch.no_grad()
    def keys(self, v: torch.Tensor) -> torch.Tensor:
        """Unit-norm keys (B, P) of views ``v`` (B, C, H, W) with shuffle-BN, in the order of ``v``.

        The (global) batch is shuffled, each process encodes its slice of the shuffled batch (its
        BatchNorm layers split it into groups), and the keys are unshuffled - so a key's BatchNorm
        statistics come from a random group of images, not from the batch its query saw.
        """
        world, rank = distributed.world_size(), distributed.rank()
        full = distributed.gather(v)                                     # (W*B, C, H, W)
        perm = torch.randperm(full.shape[0], device=v.device)           # shuffled order
        if distributed.is_distributed():
            tdist.broadcast(perm, src=0)                                 # one order for every process
        splits = max(1, self.config.key_bn_splits // world)              # groups per process
        if splits != self._key_splits:                                   # DDP: the groups are shared out
            split_batchnorm(self.key_backbone, splits)
            self._key_splits = splits
        mine = perm.view(world, -1)[rank]                                # (B,) this process's slice
        k = F.normalize(self.key_projector(self.key_backbone.forward_features(full[mine])), dim=1)
        k = distributed.gather(k)                                        # (W*B, P) shuffled order
        return k[perm.argsort()].view(world, -1, k.shape[1])[rank]       # (B, P) unshuffled, mine

    def contrast(self, query_views: torch.Tensor, key_views: torch.Tensor,
                 negatives: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One direction of the loss: ``(InfoNCE, q, k)`` with queries from ``query_views``."""
        q = F.normalize(self.projector(self.backbone.forward_features(query_views)), dim=1)   # (B, P)
        k = self.keys(key_views)                                         # (B, P), no gradient
        return losses.info_nce(q, k, negatives=negatives, temperature=self.config.temperature), q, k

    def training_step(self, batch: torch.Tensor) -> dict[str, torch.Tensor]:
        x = checks.images("batch", batch, min_batch=2)                                          # (B, C, H, W)
        v1, v2 = two_views(x, self.config.views, paper="simclr")
        # A copy: the queue is changed in place below, and q's gradient needs the old values.
        negatives = self.queue.clone()                                   # (K, P)
        loss, q, k = self.contrast(v1, v2, negatives)
        keys = k
        if self.config.symmetric:                                        # + view 2 as the query
            loss_21, _, k1 = self.contrast(v2, v1, negatives)
            loss, keys = 0.5 * (loss + loss_21), torch.cat([k, k1])
        if self.training:
            self.enqueue(distributed.gather(keys))                       # every rank's keys
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


@register(MoCo, "MoCo v2: InfoNCE against a queue of keys from a momentum (EMA) encoder")
def moco(data: Any = None, backbone: Any = None, **config: Any) -> MoCo:
    """MoCo v2 (He et al. 2020; Chen et al. 2020). ``config``: see :class:`MoCoConfig`."""
    cfg = make_config(MoCoConfig, config)
    method = MoCo(default_backbone(data, backbone, kind=MoCo.kinds[0]), cfg)
    method.image_size = data_image_size(data)
    return method
