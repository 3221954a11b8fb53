"""DINO: self-distillation with no labels. A student matches a centred, sharpened EMA teacher.

Caron et al. (2021), "Emerging Properties in Self-Supervised Vision Transformers",
https://arxiv.org/abs/2104.14294 (algorithm 1).

    x ─ views ─> 2 global (+ n local) crops
    student (backbone + head) on all crops  ─> s_j                       softmax(s_j / 0.1)
    teacher (EMA of student) on global crops ─> t_i ─ centre ─ sharpen ─> softmax((t_i - c) / 0.04)
    loss = mean over pairs i != j of cross-entropy(teacher_i, student_j)

Two opposite forces keep the teacher from collapsing: centring (subtract ``c``, an EMA of the mean
teacher output) stops one prototype from dominating but pushes towards uniform outputs; sharpening
(a low teacher temperature) pushes away from uniform. ``on_step_end`` updates the teacher (EMA with a
cosine momentum schedule, as BYOL) and the centre. Evaluation uses the teacher's backbone, as the
paper (it is the better network throughout training).

Small-data changes (measured on ``digits`` with the ``convnet`` backbone, where the paper recipe
collapses to uniform outputs within ~20 steps - teacher entropy -> log K, feature std -> 0):

* BatchNorm in the head's hidden layers (``head_bn``; the official code's ``use_bn_in_head``). The
  paper's head has none: a ViT's LayerNorm-ed tokens feed it well-scaled inputs. A small convnet's
  pooled features give a bottleneck output of norm ~0.06 whose per-sample part AdamW's first bias
  updates swamp within a few steps: every sample then points the same way, the centred teacher is
  uniform and the student copies it. BN keeps the per-sample signal at unit scale.
* Views by image size (``views="auto"``): images <= 16 px get two weak global views and no local
  crops (a 5-40% local crop of an 8x8 digit is a 3x3 blob the student can only answer with the
  mean teacher output, which pulls the whole network to a constant); larger images get multi-crop.
* K = 512 prototypes instead of 65536 (see ``out_dim``).
Not included: gradient clipping (the engine owns the optimiser; not needed at these sizes).

Any image size: crop sides are whole patches of a ViT backbone (``crop_sizes``: global = the image,
local = 96/224 of it, as the paper's 224/96 px, rounded to a multiple of the patch size), and the
head's logits - divided by temperatures down to 0.04 - are computed in float32 even under bf16
autocast (``heads.DINOHead``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from sslkit import checks, distributed, heads, losses, pretext
from sslkit.methods.base import (Method, Views, check_multicrop_views, cosine_momentum,
                                 data_image_size, default_backbone, ema_update, frozen_copy,
                                 make_config, normalized_std, resolve_views, two_views, view_recipe_of)
from sslkit.methods.registry import register


@dataclass
class DINOConfig:
    # Head: number of prototypes K, hidden width, bottleneck. Paper: 65536 / 2048 / 256 for
    # ImageNet's 1.28M images. K only needs to exceed the number of modes in the data by a margin:
    # with 65536 prototypes and 1.8k digits most prototypes would never win a sample and the
    # (1, K) centre and (B, K) logits would dominate a CPU step; 512 is plenty for ~10 classes.
    out_dim: int = 512
    hidden_dim: int = 512
    bottleneck_dim: int = 128
    # BatchNorm in the head's hidden layers (see the module docstring); False = the paper's head.
    head_bn: bool = True
    # Weight-normalised last layer with its gain fixed at 1 (a cosine classifier), as the paper.
    norm_last_layer: bool = True
    # Steps at the start during which the last layer gets no gradient. Paper: the first epoch
    # ("freeze_last_layer=1"), for ViTs; 0 = off (our runs are short and were stable without it).
    freeze_last_layer: int = 0
    # Views: "auto" = "multicrop" for images > 16 px (or when n_local > 0 is given), else "weak" (two
    # global views, no local crops); "multicrop" (2 global + n_local local crops), or a two-view
    # recipe name ("simclr", "byol", "weak") or a callable f(x, generator=None) -> view: two global
    # views only.
    views: Views = "auto"
    # Local crops with "multicrop". Paper: 10 for ViTs (6 for ResNet-50); 4 keep a CPU step cheap.
    # None = 4 with multi-crop, 0 otherwise. Sizes None = global: the image size, local: 96/224 of
    # it (the paper's 224 / 96 px), each rounded to a multiple of a ViT's patch size; given sizes
    # must be multiples of it.
    n_local: int | None = None
    global_size: int | None = None
    local_size: int | None = None
    # Temperatures. Paper: student 0.1, teacher 0.04 (0.04 -> 0.07 warm-up over 30 epochs when used).
    student_temp: float = 0.1
    teacher_temp: float = 0.04
    warmup_teacher_temp: float = 0.04
    teacher_temp_warmup: float = 0.0      # fraction of total steps for the linear warm-up (0 = none)
    # Centre EMA momentum. Paper: 0.9.
    center_momentum: float = 0.9
    # Teacher momentum at the first step, rising to 1 by a cosine. Paper: 0.996 over 100-800
    # epochs; 0.99 lets the teacher move within our short runs.
    base_momentum: float = 0.99

    def __post_init__(self) -> None:
        for name in ("out_dim", "hidden_dim", "bottleneck_dim"):
            checks.integer(name, getattr(self, name), min=1)
        checks.boolean("head_bn", self.head_bn)
        checks.boolean("norm_last_layer", self.norm_last_layer)
        checks.integer("freeze_last_layer", self.freeze_last_layer, min=0)
        check_multicrop_views(self.views, self.n_local)
        for name in ("global_size", "local_size"):
            if getattr(self, name) is not None:
                checks.integer(name, getattr(self, name), min=1)
        for name in ("student_temp", "teacher_temp", "warmup_teacher_temp"):
            checks.number(name, getattr(self, name), min=0.0, min_open=True)
        checks.number("teacher_temp_warmup", self.teacher_temp_warmup, min=0.0, max=1.0)
        checks.number("center_momentum", self.center_momentum, min=0.0, max=1.0)
        checks.number("base_momentum", self.base_momentum, min=0.0, max=1.0)


def dino_head(in_dim: int, c: DINOConfig) -> heads.DINOHead:
    """The paper's head (MLP -> bottleneck -> L2 norm -> weight-normalised prototypes), BN optional."""
    return heads.DINOHead(in_dim, c.out_dim, c.hidden_dim, c.bottleneck_dim,
                          norm_last_layer=c.norm_last_layer, batch_norm=c.head_bn)


class DINO(Method):
    name = "dino"
    kinds = ("image",)
    default_lr = 5e-4  # AdamW; paper: 5e-4 x B/256

    center: torch.Tensor

    def __init__(self, backbone: nn.Module, config: DINOConfig) -> None:
        super().__init__(backbone)
        self.config = config
        c = config
        self.head = dino_head(backbone.embed_dim, c)
        self.teacher_backbone = frozen_copy(backbone)
        self.teacher_head = frozen_copy(self.head)
        self.register_buffer("center", torch.zeros(1, c.out_dim))   # (1, K) EMA of teacher outputs
        # Crops must be whole patches for a ViT (1 for ConvNets: any size).
        self.patch_size = int(getattr(backbone, "patch_size", 1))
        for name in ("global_size", "local_size"):
            size = getattr(c, name)
            if size is not None and size % self.patch_size:
                p = self.patch_size
                raise ValueError(f"{name}={size} is not a multiple of the backbone's patch_size={p}; "
                                 f"use {max(p, size // p * p)} or {(size // p + 1) * p}")
        self.tau = c.base_momentum                 # last teacher momentum used (logged)
        self.teacher_temp = c.warmup_teacher_temp if c.teacher_temp_warmup > 0 else c.teacher_temp
        self.steps_done = 0                        # for freeze_last_layer (set by on_step_end)
        # The step count and the teacher temperature in use are training state: kept in buffers
        # so a checkpoint resumes them (the Python mirrors above are what the step reads, no sync).
        self.register_buffer("step_count", torch.zeros((), dtype=torch.long))
        self.register_buffer("temperatures", torch.tensor([self.teacher_temp, self.tau]))   # (teacher temp, tau)
        self.register_load_state_dict_post_hook(lambda module, keys: module._read_progress())
        self._batch_center: torch.Tensor | None = None   # this step's mean teacher output
        # Freezing the last layer: its gradient is zeroed while steps_done < freeze_last_layer.
        # (AdamW's decoupled weight decay still shrinks weight_v, which the weight norm ignores.)
        if c.freeze_last_layer > 0:
            self.head.weight_v.register_hook(self._maybe_freeze)

    def _read_progress(self) -> None:
        self.steps_done = int(self.step_count)
        self.teacher_temp, self.tau = self.temperatures.tolist()

    def _maybe_freeze(self, grad: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(grad) if self.steps_done < self.config.freeze_last_layer else grad

    def crop_sizes(self, height: int, width: int) -> tuple[tuple[int, int], tuple[int, int]]:
        """(global, local) crop sizes (h, w) for images of ``height`` x ``width``: the configured
        sizes, or the image and 96/224 of it rounded to whole patches (at least one patch, 2 px)."""
        c = self.config
        glob, local = pretext.crop_sizes(height, width, self.patch_size)
        return ((c.global_size,) * 2 if c.global_size else glob), ((c.local_size,) * 2 if c.local_size else local)

    def _views(self, image_size: int) -> Views:
        """``config.views`` with "auto" resolved: multi-crop when local crops are asked for
        (n_local > 0), else by image size (``sslkit.pretext.auto_views``: "weak" <= 16 px)."""
        return resolve_views(self.config.views, image_size, paper="multicrop", n_local=self.config.n_local)

    @property
    def view_recipe(self) -> Any:
        """The crops' recipes at this method's image size: a list (2 global, then the local crops)."""
        c, size = self.config, self.image_size
        if size is None and c.views == "auto" and not c.n_local:
            return view_recipe_of("auto", None, paper="multicrop")
        views = self._views(size or 1000)   # past "auto", only the multi-crop sizes need the image size
        n_local = 4 if c.n_local is None else c.n_local
        if views == "multicrop" and size is None:
            return f"multicrop: 2 global + {n_local} local crops, sized from the images"
        if views == "multicrop":   # the same sizes as crops() passes to multicrop
            glob, local = self.crop_sizes(size, size)
            return pretext.multicrop_recipes(size, 2, n_local, glob, local)
        return view_recipe_of(views, size, paper="simclr")

    def crops(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The views of ``x`` (B, C, H, W): 2 global crops first, then the local crops."""
        c = self.config
        views = self._views(min(x.shape[-2:]))
        if views == "multicrop":
            n_local = 4 if c.n_local is None else c.n_local
            glob, local = self.crop_sizes(*x.shape[-2:])
            return pretext.multicrop(x, n_global=2, n_local=n_local, global_size=glob, local_size=local)
        return list(two_views(x, views))

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
        x = checks.images("batch", batch, min_batch=2)                                          # (B, C, H, W)
        c = self.config
        crops = self.crops(x)                                            # 2 (+ n_local) crops
        student = self._forward(self.backbone, self.head, crops)         # (n_crops, B, K)
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
                "tau": torch.full((), self.tau, device=x.device),              # fills: no host-to-
                "teacher_temp": torch.full((), self.teacher_temp, device=x.device)}  # device copy

    def on_step_end(self, step: int, total_steps: int) -> None:
        """After optimiser step ``step`` (1..total_steps, steps done): teacher EMA, centre, temperature."""
        c = self.config
        step = checks.integer("step", step, min=1)
        self.steps_done = step
        # The k-th update (k = step - 1 = 0, 1, ...) uses tau_k: base at the first step, -> 1.
        self.tau = cosine_momentum(step - 1, total_steps, c.base_momentum)
        ema_update(self.teacher_backbone, self.backbone, self.tau)
        ema_update(self.teacher_head, self.head, self.tau)
        if self._batch_center is not None:     # centre <- m * centre + (1 - m) * batch mean
            self.center.lerp_(self._batch_center.to(self.center.dtype), 1.0 - c.center_momentum)
            self._batch_center = None
        # Teacher temperature for the next step: linear warm-up over `warm` steps, then constant.
        warm = c.teacher_temp_warmup * total_steps
        frac = min(1.0, step / warm) if warm > 0 else 1.0
        self.teacher_temp = c.warmup_teacher_temp + frac * (c.teacher_temp - c.warmup_teacher_temp)
        self.step_count.fill_(step)                     # fills from Python numbers: no host sync
        self.temperatures[0].fill_(self.teacher_temp)
        self.temperatures[1].fill_(self.tau)

    @torch.no_grad()
    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Teacher backbone features (B, D), as the paper evaluates."""
        return self.teacher_backbone.forward_features(x)


@register(DINO, "DINO: a student matches a centred, sharpened EMA teacher across multi-crop views")
def dino(data: Any = None, backbone: Any = None, **config: Any) -> DINO:
    """DINO (Caron et al. 2021). ``config``: see :class:`DINOConfig`."""
    cfg = make_config(DINOConfig, config)
    method = DINO(default_backbone(data, backbone, kind=DINO.kinds[0]), cfg)
    method.image_size = data_image_size(data)
    return method
