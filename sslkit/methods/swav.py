"""SwAV: cluster the images online and let each view predict the cluster code of the other views.

Caron, Misra, Mairal, Goyal, Bojanowski & Joulin (2020), "Unsupervised Learning of Visual Features by
Contrasting Cluster Assignments", https://arxiv.org/abs/2006.09882.

    crops ─ backbone ─ projector ─ L2 norm ─> z (V, B, P) ─ prototypes C (unit rows) ─> scores (V, B, K)
    codes q_i = sinkhorn(scores_i) for the 2 global crops (no gradient): each prototype gets B / K
    loss = swav_loss(scores, q): every crop predicts (softmax(scores / T)) the codes of the other crops

Sinkhorn's equipartition is what prevents collapse: without it every image could take the same
prototype. Small batches cannot be spread over many prototypes, so a queue of the projections of the
last batches (scored against the current prototypes) joins the Sinkhorn problem once it is full; it
starts filling after ``queue_start`` steps, as the official code starts it after some epochs. The
prototypes are frozen (no gradient; the official code drops theirs) during the first
``freeze_prototypes`` steps, and re-normalised to unit length after every step.
Notebook helpers: ``scores(x)``, ``codes(x, sinkhorn=True/False)``, ``assign(x)`` (prototype per image).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from sslkit import checks, heads, losses, pretext
from sslkit.methods.base import (Method, Views, check_multicrop_views, default_backbone, make_config,
                                 normalized_std, resolve_views, two_views)
from sslkit.methods.registry import register


@dataclass
class SwAVConfig:
    # Projector. Paper: 2048 hidden, 128 out for ResNet-50; 512 hidden suits our 128-512 wide backbones.
    proj_hidden: int = 512
    proj_dim: int = 128
    # Number of prototypes K. Paper: 3000 for ImageNet's 1000 classes; our datasets have ~10 classes
    # and batches of ~256, which Sinkhorn can spread over ~100 prototypes (a few samples each).
    n_prototypes: int = 100
    # Softmax temperature of the predictions. Paper: 0.1.
    temperature: float = 0.1
    # Sinkhorn entropy weight and rounds. Paper: 0.05 and 3.
    epsilon: float = 0.05
    sinkhorn_iterations: int = 3
    # Steps during which the prototypes get no update. Paper: 313 iterations (1 epoch at batch 4096);
    # 1 epoch of our datasets at batch 256 is ~10 steps, so 50 steps let the projector settle first.
    freeze_prototypes: int = 50
    # Projections kept in the queue per global crop (per process; the official code splits
    # queue_length over the processes). 0 = no queue. Paper: 3840 at batch 256, i.e. 15 batches;
    # 0 by default here: batches of 256 already hold ~2.5 samples per prototype.
    queue_length: int = 0
    # Optimiser steps before the queue starts filling (paper: epoch 15 of 800).
    queue_start: int = 0
    # Views, as DINO's: "auto" = two weak views for images <= 16 px (unless n_local > 0), else
    # "multicrop" (2 global + n_local local crops); or a two-view recipe name or callable.
    views: Views = "auto"
    # Local crops with "multicrop". Paper: 6 (2 x 224 + 6 x 96 px); 4 keep a CPU step cheap.
    n_local: int | None = None
    # Crop scales. Paper: global (0.14, 1), local (0.05, 0.14).
    global_scale: tuple[float, float] = (0.14, 1.0)
    local_scale: tuple[float, float] = (0.05, 0.14)

    def __post_init__(self) -> None:
        for name in ("proj_hidden", "proj_dim", "n_prototypes", "sinkhorn_iterations"):
            checks.integer(name, getattr(self, name), min=1)
        for name in ("freeze_prototypes", "queue_length", "queue_start"):
            checks.integer(name, getattr(self, name), min=0)
        checks.number("temperature", self.temperature, min=0.0, min_open=True)
        checks.number("epsilon", self.epsilon, min=0.0, min_open=True)
        check_multicrop_views(self.views, self.n_local)
        for name in ("global_scale", "local_scale"):
            lo, _ = checks.number_range(name, getattr(self, name), min=0.0, max=1.0)
            checks.number(f"{name}[0]", lo, min=0.0, min_open=True)


class SwAV(Method):
    name = "swav"
    kinds = ("image",)
    default_lr = 1e-3  # AdamW; paper: LARS with lr 4.8 at batch 4096

    queue: torch.Tensor
    steps_done: torch.Tensor
    queue_fill: torch.Tensor

    def __init__(self, backbone: nn.Module, config: SwAVConfig) -> None:
        super().__init__(backbone)
        self.config = c = config
        self.projector = heads.projection_head(backbone.embed_dim, c.proj_hidden, c.proj_dim)
        self.prototypes = nn.Linear(c.proj_dim, c.n_prototypes, bias=False)   # rows = unit prototypes
        self.normalize_prototypes()
        # State as buffers so checkpoints resume exactly; Python copies (refreshed on load) decide
        # the freeze and the queue without reading the device every step.
        self.register_buffer("steps_done", torch.zeros((), dtype=torch.long))
        self.register_buffer("queue", torch.zeros(2, c.queue_length, c.proj_dim))   # newest rows first
        self.register_buffer("queue_fill", torch.zeros((), dtype=torch.long))       # rows written
        self._steps, self._fill = 0, 0
        self.register_load_state_dict_post_hook(lambda module, keys: module._sync_counters())
        # While frozen the prototypes get no gradient at all; DDP must then be told that a parameter
        # can go unused (``fit`` reads this attribute), and leaves its gradient None as well.
        self.find_unused_parameters = c.freeze_prototypes > 0

    def _sync_counters(self) -> None:
        self._steps, self._fill = int(self.steps_done), int(self.queue_fill)

    @torch.no_grad()
    def normalize_prototypes(self) -> None:
        """Scale every prototype (row of ``prototypes.weight``) to unit length."""
        self.prototypes.weight.copy_(F.normalize(self.prototypes.weight, dim=1))

    def crops(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The views of ``x`` (B, C, H, W): 2 global crops first, then the local crops."""
        c = self.config
        # "auto": local crops when asked for (n_local > 0) or when the images are big enough
        views = resolve_views(c.views, min(x.shape[-2:]), paper="multicrop", n_local=c.n_local)
        if views == "multicrop":
            return pretext.multicrop(x, n_global=2, n_local=4 if c.n_local is None else c.n_local,
                                     global_scale=c.global_scale, local_scale=c.local_scale,
                                     patch_size=getattr(self.backbone, "patch_size", 1))  # ViT: whole patches
        return list(two_views(x, views))

    def project(self, crops: list[torch.Tensor]) -> torch.Tensor:
        """Unit projections (V, B, P) of a list of V crops; crops of one size go through in one pass."""
        out, i = [], 0
        while i < len(crops):
            j = i
            while j < len(crops) and crops[j].shape == crops[i].shape:
                j += 1
            out.append(self.projector(self.backbone.forward_features(torch.cat(crops[i:j]))))
            i = j
        return F.normalize(torch.cat(out), dim=1).unflatten(0, (len(crops), -1))

    @torch.no_grad()
    def _codes(self, scores: torch.Tensor) -> tuple[torch.Tensor, bool]:
        """Sinkhorn codes (2, B, K) of the 2 global crops from their ``scores`` (2, B, K); once the
        queue is full (as the official code: not before) its rows join each crop's problem, scored
        against the current prototypes. Also returns whether the queue was used."""
        c, b, length = self.config, scores.shape[1], self.queue.shape[1]
        use_queue = length > 0 and self._fill >= length
        codes = []
        for i in (0, 1):
            s = scores[i]                                                             # (B, K)
            if use_queue:
                s = torch.cat([self.queue[i] @ self.prototypes.weight.T, s])          # (L + B, K)
            codes.append(losses.sinkhorn(s, c.epsilon, c.sinkhorn_iterations)[-b:])  # this batch's rows
        return torch.stack(codes), use_queue

    @torch.no_grad()
    def _enqueue(self, z: torch.Tensor) -> None:
        """Put the global crops' projections ``z`` (2, B, P) in front of the queue (oldest rows drop out)."""
        length = self.queue.shape[1]
        self.queue.copy_(torch.cat([z.to(self.queue.dtype), self.queue], dim=1)[:, :length])
        self._fill = min(self._fill + z.shape[1], length)
        self.queue_fill.fill_(self._fill)

    def training_step(self, batch: torch.Tensor) -> dict[str, torch.Tensor]:
        x = checks.images("batch", batch, min_batch=2)                                          # (B, C, H, W)
        c = self.config
        z = self.project(self.crops(x))                                  # (V, B, P) unit vectors
        w = self.prototypes.weight                                       # (K, P) unit rows
        if self._steps < c.freeze_prototypes:   # frozen: no gradient, so the optimiser skips them
            w = w.detach()                      # (the official code computes it and sets it to None)
        scores = z @ w.T                                                 # (V, B, K) cosines
        codes, used_queue = self._codes(scores[:2].detach())             # (2, B, K), global crops only
        # The queue fills in training mode once queue_start steps are done (evaluation leaves it).
        if self.queue.shape[1] > 0 and self.training and self._steps >= c.queue_start:
            self._enqueue(z[:2].detach())
        loss = losses.swav_loss(scores, codes, c.temperature)
        with torch.no_grad():   # share of the prototypes that are some image's nearest (1 = all in use)
            hit = torch.zeros(c.n_prototypes, device=x.device)   # scatter, not bincount: no host sync
            used = hit.index_fill_(0, scores[0].argmax(-1), 1.0).mean()
        return {"loss": loss, "prototypes_used": used, "std": normalized_std(z[0]),
                "queue": torch.full((), float(used_queue), device=x.device)}  # a fill, no copy

    def on_step_end(self, step: int, total_steps: int) -> None:
        """After optimiser step ``step`` (1..total_steps): count the step, re-normalise the prototypes
        (unless they were frozen in this step: then they are unchanged, still of unit length)."""
        self._steps = checks.integer("step", step, min=1)
        self.steps_done.fill_(step)
        if step > self.config.freeze_prototypes:   # step `step` updated them iff step - 1 >= freeze
            self.normalize_prototypes()

    # -- for notebooks: which prototype each image takes, with and without Sinkhorn --------------------
    @torch.no_grad()
    def scores(self, x: torch.Tensor) -> torch.Tensor:
        """Cosine of each image's projection with each prototype (B, K), in eval mode (BatchNorm with
        running statistics, so an image's scores do not depend on the rest of the batch)."""
        x = checks.images("batch", x, min_batch=2)
        was = self.training
        self.eval()
        try:
            return self.prototypes(self.project([x])[0])
        finally:
            self.train(was)

    @torch.no_grad()
    def codes(self, x: torch.Tensor, sinkhorn: bool = True) -> torch.Tensor:
        """Soft codes (B, K) of the batch ``x``: Sinkhorn's balanced codes over this batch (as in
        training, without the queue), or with ``sinkhorn=False`` each row's plain
        ``softmax(scores / epsilon)`` - the same kernel, only normalised per image, so a few
        prototypes can take most images."""
        checks.choice("sinkhorn", sinkhorn, (True, False))
        s = self.scores(x)
        if sinkhorn:
            return losses.sinkhorn(s, self.config.epsilon, self.config.sinkhorn_iterations)
        return torch.softmax(s / self.config.epsilon, dim=-1)

    @torch.no_grad()
    def assign(self, x: torch.Tensor, sinkhorn: bool = False) -> torch.Tensor:
        """Prototype index (B,) of each image: its nearest prototype, or with ``sinkhorn=True`` the
        largest entry of its balanced code."""
        return self.codes(x, sinkhorn).argmax(dim=-1)


@register(SwAV, "SwAV: online clustering - each view predicts the Sinkhorn-balanced code of the others")
def swav(data: Any = None, backbone: Any = None, **config: Any) -> SwAV:
    """SwAV (Caron et al. 2020). ``config``: see :class:`SwAVConfig`."""
    cfg = make_config(SwAVConfig, config)
    return SwAV(default_backbone(data, backbone, kind=SwAV.kinds[0]), cfg)
