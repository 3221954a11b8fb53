"""DINO: self-distillation with no labels. A student matches a centred, sharpened EMA teacher.

Caron et al. (2021), "Emerging Properties in Self-Supervised Vision Transformers",
https://arxiv.org/abs/2104.14294 (algorithm 1).

    x ─ multicrop ─> 2 global + n local crops
    student (backbone + head) on all crops  ─> s_j                       softmax(s_j / 0.1)
    teacher (EMA of student) on global crops ─> t_i ─ centre ─ sharpen ─> softmax((t_i - c) / 0.04)
    loss = mean over pairs i != j of cross-entropy(teacher_i, student_j)

Two opposite forces keep the teacher from collapsing: centring (subtract ``c``, an EMA of the mean
teacher output) stops one prototype from dominating but pushes towards uniform outputs; sharpening
(a low teacher temperature) pushes away from uniform. ``on_step_end`` updates the teacher (EMA with a
cosine momentum schedule, as BYOL) and the centre. The teacher temperature can be warmed up
linearly from ``warmup_teacher_temp`` over the first ``teacher_temp_warmup`` fraction of training.
Evaluation uses the teacher's backbone, as the paper (it is the better network throughout training).
Not included: gradient clipping and freezing the last layer in the first epoch (paper stabilisers
for ViTs at large scale).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from sslkit import checks, distributed, heads, losses, pretext
from sslkit.methods.base import (Method, check_images, cosine_momentum, default_backbone, ema_update,
                                 frozen_copy, make_config, normalized_std)
from sslkit.methods.registry import register


@dataclass
class DINOConfig:
    # Head: number of prototypes K, hidden width, bottleneck. Paper: 65536 / 2048 / 256 for
    # ImageNet; tiny datasets with ~10 classes need far fewer prototypes (1024 / 512 / 128).
    out_dim: int = 1024
    hidden_dim: int = 512
    bottleneck_dim: int = 128
    # Crops. Paper: 2 global + 10 local for ViTs (6 for ResNet-50); 4 local crops keep a CPU step cheap.
    # Sizes None = sslkit.pretext.multicrop's defaults (global = image size, local about 3/7 of it).
    n_local: int = 4
    global_size: int | None = None
    local_size: int | None = None
    # Temperatures. Paper: student 0.1, teacher 0.04 (0.04 -> 0.07 warm-up over 30 epochs when used).
    student_temp: float = 0.1
    teacher_temp: float = 0.04
    warmup_teacher_temp: float = 0.04
    teacher_temp_warmup: float = 0.0      # fraction of total steps for the linear warm-up (0 = none)
    # Centre EMA momentum. Paper: 0.9.
    center_momentum: float = 0.9
    # Teacher momentum at step 0, rising to 1 by a cosine. Paper: 0.996 over 100-800 epochs; 0.99
    # lets the teacher move within our short runs.
    base_momentum: float = 0.99

    def __post_init__(self) -> None:
        for name in ("out_dim", "hidden_dim", "bottleneck_dim"):
            checks.integer(name, getattr(self, name), min=1)
        checks.integer("n_local", self.n_local, min=0)
        for name in ("global_size", "local_size"):
            if getattr(self, name) is not None:
                checks.integer(name, getattr(self, name), min=1)
        for name in ("student_temp", "teacher_temp", "warmup_teacher_temp"):
            checks.number(name, getattr(self, name), min=0.0, min_open=True)
        checks.number("teacher_temp_warmup", self.teacher_temp_warmup, min=0.0, max=1.0)
        checks.number("center_momentum", self.center_momentum, min=0.0, max=1.0)
        checks.number("base_momentum", self.base_momentum, min=0.0, max=1.0)


class DINO(Method):
    name = "dino"
    kinds = ("image",)
    default_lr = 5e-4  # AdamW; paper: 5e-4 x B/256

    center: torch.Tensor

    def __init__(self, backbone: nn.Module, config: DINOConfig) -> None:
        super().__init__(backbone)
        self.config = config
        c = config
        self.head = heads.DINOHead(backbone.embed_dim, c.out_dim, c.hidden_dim, c.bottleneck_dim)
        self.teacher_backbone = frozen_copy(backbone)
        self.teacher_head = frozen_copy(self.head)
        self.register_buffer("center", torch.zeros(1, c.out_dim))   # (1, K) EMA of teacher outputs
        self.tau = c.base_momentum                 # last teacher momentum used (logged)
        self.teacher_temp = c.warmup_teacher_temp if c.teacher_temp_warmup > 0 else c.teacher_temp
        self._batch_center: torch.Tensor | None = None   # this step's mean teacher output

    def _forward(self, backbone: nn.Module, head: nn.Module, crops: list[torch.Tensor]) -> torch.Tensor:
        """Head outputs for a list of crops (n, B, K); crops of one size go through in one pass."""
        out, i = [], 0
        while i < len(crops):
            j = i
            while j < len(crops) and crops[j].shape == crops[i].shape:
                j += 1
            out.append(head(backbone.forward_features(torch.cat(crops[i:j]))))   # ((j - i) B, K)
            i = j
        return torch.cat(out).unflatten(0, (len(crops), -1))

    def training_step(self, batch: torch.Tensor) -> dict[str, torch.Tensor]:
        x = check_images(batch)                                          # (B, C, H, W)
        c = self.config
        crops = pretext.multicrop(x, n_global=2, n_local=c.n_local, global_size=c.global_size,
                                  local_size=c.local_size)               # 2 + n_local crops
        student = self._forward(self.backbone, self.head, crops)         # (2 + n_local, B, K)
        with torch.no_grad():                                            # the teacher: no gradient
            teacher = self._forward(self.teacher_backbone, self.teacher_head, crops[:2])  # (2, B, K)
            # Centre update target: the mean teacher output over the global batch.
            self._batch_center = distributed.all_reduce_mean(teacher.mean(dim=(0, 1)))[None]  # (1, K)
        loss = losses.dino_loss(student, teacher, self.center, c.student_temp, self.teacher_temp)
        with torch.no_grad():
            probs = torch.softmax((teacher - self.center) / self.teacher_temp, dim=-1)
            entropy = -(probs * probs.clamp_min(1e-12).log()).sum(-1).mean()   # max log K (uniform)
        # loss = teacher entropy + KL(teacher || student): the KL is what the student can reduce;
        # KL -> 0 with entropy -> log K means uniform collapse, with entropy -> 0 one-prototype collapse.
        return {"loss": loss, "teacher_entropy": entropy, "kl": loss.detach() - entropy,
                "std": normalized_std(student[0]),
                "tau": torch.tensor(self.tau, device=x.device),
                "teacher_temp": torch.tensor(self.teacher_temp, device=x.device)}

    def on_step_end(self, step: int, total_steps: int) -> None:
        c = self.config
        self.tau = cosine_momentum(step, total_steps, c.base_momentum)
        ema_update(self.teacher_backbone, self.backbone, self.tau)
        ema_update(self.teacher_head, self.head, self.tau)
        if self._batch_center is not None:     # centre <- m * centre + (1 - m) * batch mean
            self.center.lerp_(self._batch_center.to(self.center.dtype), 1.0 - c.center_momentum)
            self._batch_center = None
        # Teacher temperature for the next step: linear warm-up, then constant.
        warm = c.teacher_temp_warmup * total_steps
        frac = min(1.0, (step + 1) / warm) if warm > 0 else 1.0
        self.teacher_temp = c.warmup_teacher_temp + frac * (c.teacher_temp - c.warmup_teacher_temp)

    @torch.no_grad()
    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Teacher backbone features (B, D), as the paper evaluates."""
        return self.teacher_backbone.forward_features(x)


@register("dino", "DINO: a student matches a centred, sharpened EMA teacher across multi-crop views")
def dino(data: Any = None, backbone: Any = None, **config: Any) -> DINO:
    """DINO (Caron et al. 2021). ``config``: see :class:`DINOConfig`."""
    cfg = make_config(DINOConfig, config)
    return DINO(default_backbone(data, backbone, kind="image"), cfg)
