"""The one interface every SSL method implements, plus the small pieces all methods share.

    method = sslkit.create("simclr", data=ds)        # an nn.Module
    out = method.training_step(batch)                  # {"loss": tensor, ...logged terms}
    out["loss"].backward(); optimizer.step()
    method.on_step_end(step, total_steps)              # EMA targets, queues, centres...
    feats = method.embed(x)                            # (B, D) features for evaluation

``batch`` is what ``Dataset.batch(idx)`` returns: float images in [0, 1] (B, C, H, W), clips
(B, T, C, H, W), token ids (B, L) or signals (B, C, T) - already on the method's device. Methods make
their own views/masks on that device with ``sslkit.pretext``.

Shared pieces (used by every method file):
    default_backbone(data, backbone, kind=...)   None / name / module -> a validated backbone
    make_config(Config, config)                  dataclass config; unknown keys -> ValueError
    ema_update(target, online, momentum)         target <- m * target + (1 - m) * online
    cosine_momentum(step, total_steps, base)     BYOL's momentum schedule, base -> 1
    frozen_copy(module)                          a deep copy that never receives gradients
    check_images(x), two_views(x, views, ...)    the views hook of the image methods
    normalized_std(z), view_similarity(z1, z2)   collapse monitor; mean cosine of positives/negatives
"""
from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Callable
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from sslkit import checks


class Method(nn.Module):
    """Base class. Subclasses set ``name``/``kinds`` and implement ``training_step``."""

    name: ClassVar[str] = "method"
    # Which dataset kinds the method trains on ("image", "text", "signal", "clip", "spectrogram").
    kinds: ClassVar[tuple[str, ...]] = ("image",)
    # Sensible default learning rate for the engine's optimiser (AdamW unless the method says otherwise).
    default_lr: ClassVar[float] = 1e-3

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        # The backbone's registry name when ``default_backbone`` built it by name (None for a module
        # passed in). The engine writes it into checkpoints so ``sslkit.train.load_method`` can
        # rebuild the same backbone (its other arguments come from the data).
        self.backbone_name: str | None = getattr(backbone, "sslkit_name", None)

    @property
    def embed_dim(self) -> int:
        """Size D of the features ``embed`` returns."""
        return int(self.backbone.embed_dim)

    def training_step(self, batch: torch.Tensor) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def forward(self, batch: torch.Tensor) -> dict[str, torch.Tensor]:
        # forward == training_step, so DistributedDataParallel(method)(batch) syncs gradients.
        return self.training_step(batch)

    @torch.no_grad()
    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Features for evaluation: the backbone's ``forward_features``, (B, D)."""
        return self.backbone.forward_features(x)

    def on_step_end(self, step: int, total_steps: int) -> None:
        """Called by the engine after each optimiser step (EMA/queue/centre updates).

        ``step`` is the number of optimiser steps done so far, 1-based: 1 after the first step,
        ``total_steps`` after the last. Schedules indexed from 0 (``cosine_momentum``) use ``step - 1``.
        """

    def extra_repr(self) -> str:
        cfg = getattr(self, "config", None)
        return repr(cfg) if cfg is not None else ""


# --------------------------------------------------------------------------------------------------
# configs
# --------------------------------------------------------------------------------------------------
def make_config(cls: type, config: dict[str, Any]) -> Any:
    """``cls(**config)`` for a dataclass config, with a ValueError naming any unknown key.

    Value checks live in each config's ``__post_init__`` (via ``sslkit.checks``).
    """
    allowed = [f.name for f in dataclasses.fields(cls)]
    for key in config:
        if key not in allowed:
            raise ValueError(f"{key}={config[key]!r} is not a setting of {cls.__name__}; "
                             f"allowed: {', '.join(allowed)}")
    return cls(**config)


# --------------------------------------------------------------------------------------------------
# backbones
# --------------------------------------------------------------------------------------------------
# Default backbone by data kind (when ``backbone=None``). Images: the tiny ``convnet`` for <= 32 px
# (digits, shapes, CIFAR-sized data train in minutes on a laptop); ``resnet18`` above that (STL-10).
# ``resnet18_cifar`` is the stronger 32 px choice when asked for by name.
# Spectrograms (F x T) get ``spec_convnet``: the image convnet pooled over time only (it keeps
# which frequencies sound; global pooling would average formants away).
_DEFAULT_BY_KIND = {"text": "transformer", "signal": "conv1d", "clip": "frames", "spectrogram": "spec_convnet"}


def _data_facts(data: Any, kind: str | None) -> dict[str, Any]:
    """kind, channels, image size, vocabulary, length of ``data`` (a Dataset) or of the defaults."""
    if data is None:
        kind = kind or "image"
        return {"kind": kind}
    for attr in ("kind", "sample_shape"):
        if not hasattr(data, attr):
            raise ValueError(f"data must be a sslkit.data.Dataset (or None); got {type(data).__name__}")
    # Image methods build their backbone for spectrograms too (image-shaped); whether a method
    # trains on them is its ``kinds`` (``sslkit.create`` checks).
    if kind is not None and data.kind != kind and not (kind == "image" and data.kind == "spectrogram"):
        raise ValueError(f"data={data.name!r} holds {data.kind} data; this needs {kind} data")
    facts: dict[str, Any] = {"kind": data.kind}
    shape = tuple(data.sample_shape)
    if data.kind in ("image", "spectrogram"):   # (C, H, W) / (C, F, T)
        facts.update(in_channels=shape[0], image_size=shape[-1])
    elif data.kind == "clip":         # (T, C, H, W)
        facts.update(in_channels=shape[1], image_size=shape[-1], num_frames=shape[0])
    elif data.kind == "signal":       # (C, T)
        facts.update(in_channels=shape[0], length=shape[-1])
    elif data.kind == "text":         # (L,)
        facts.update(vocab_size=data.vocab_size, max_len=shape[0],
                     pad_id=getattr(data.tokenizer, "pad_id", None))
    return facts


def _backbone_kwargs(facts: dict[str, Any]) -> dict[str, Any]:
    """Keyword arguments for ``sslkit.backbones.create`` from the data facts."""
    keys = {"image": ("in_channels", "image_size"), "clip": ("in_channels", "image_size"),
            "spectrogram": ("in_channels", "image_size"),
            "signal": ("in_channels", "length"), "text": ("vocab_size", "max_len", "pad_id")}[facts["kind"]]
    return {k: facts[k] for k in keys if facts.get(k) is not None}


def default_backbone(data: Any = None, backbone: nn.Module | str | None = None, *,
                     kind: str | None = None) -> nn.Module:
    """Resolve the ``backbone`` argument of every method factory.

    Args:
        data: a ``sslkit.data.Dataset`` or None; gives kind, channels, image size, vocabulary.
        backbone: None (chosen by data: ``convnet`` for images <= 32 px, ``resnet18`` above,
            ``transformer`` for text, ``conv1d`` for signals, ``frames`` for clips), a name from
            ``sslkit.backbones.names()`` (built for ``data``), or an ``nn.Module`` with
            ``forward_features(x) -> (B, D)`` and an int ``embed_dim`` (used as is).
        kind: the data kind the method needs ("image", "text", "signal", "clip"); checked against
            ``data`` and used to pick the default when ``data`` is None.
    """
    if kind is not None:
        checks.choice("kind", kind, ("image", "text", "signal", "clip"))
    if isinstance(backbone, nn.Module):
        if not callable(getattr(backbone, "forward_features", None)):
            raise ValueError(f"backbone={type(backbone).__name__} has no forward_features(x) -> (B, D); "
                             f"wrap it or pass a name from sslkit.backbones.names()")
        dim = getattr(backbone, "embed_dim", None)
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
            raise ValueError(f"backbone={type(backbone).__name__} needs an int attribute embed_dim >= 1 "
                             f"(the feature size D); got {dim!r}")
        if data is not None:
            _data_facts(data, kind)   # still check the data kind
        return backbone
    from sslkit import backbones
    facts = _data_facts(data, kind)
    if backbone is None:
        if facts["kind"] == "image":
            backbone = "convnet" if facts.get("image_size", 32) <= 32 else "resnet18"
        else:
            backbone = _DEFAULT_BY_KIND[facts["kind"]]
    if not isinstance(backbone, str):
        raise ValueError(f"backbone={backbone!r} must be None, a name ({', '.join(backbones.names())}) "
                         f"or an nn.Module with forward_features and embed_dim")
    checks.choice("backbone", backbone, backbones.names())
    if facts["kind"] == "text" and facts.get("vocab_size") is None:
        raise ValueError(f"backbone={backbone!r} for text needs data=<a text Dataset> (for its vocabulary); "
                         f"got data={data!r}")
    kwargs = _backbone_kwargs(facts)
    module = backbones.create(backbone, **kwargs)
    # Record how it was built: Method.__init__ copies the name to ``method.backbone_name``, which
    # checkpoints store, so ``load_method`` rebuilds it (the kwargs follow from the same data).
    module.sslkit_name = backbone
    module.sslkit_kwargs = kwargs
    return module


# --------------------------------------------------------------------------------------------------
# targets that follow the online network (BYOL, MoCo, DINO)
# --------------------------------------------------------------------------------------------------
def frozen_copy(module: nn.Module) -> nn.Module:
    """A deep copy of ``module`` that never gets gradients (``requires_grad=False`` everywhere)."""
    target = copy.deepcopy(module)
    for p in target.parameters():
        p.requires_grad_(False)
    return target


@torch.no_grad()
def ema_update(target: nn.Module, online: nn.Module, momentum: float) -> None:
    """``target <- momentum * target + (1 - momentum) * online`` for parameters and float buffers.

    Integer buffers (e.g. BatchNorm's ``num_batches_tracked``) are copied. ``momentum=1`` leaves the
    target unchanged, ``momentum=0`` copies the online network.
    """
    momentum = checks.number("momentum", momentum, min=0.0, max=1.0)
    t_params, o_params = list(target.parameters()), list(online.parameters())
    t_bufs, o_bufs = list(target.buffers()), list(online.buffers())
    if len(t_params) != len(o_params) or len(t_bufs) != len(o_bufs):
        raise ValueError("target and online must have the same architecture "
                         f"({len(t_params)} vs {len(o_params)} parameters)")
    for i, (t, o) in enumerate(zip(t_params + t_bufs, o_params + o_bufs)):
        if t.shape != o.shape:  # shapes are Python facts: no device sync
            raise ValueError(f"target and online must have the same architecture: tensor {i} has "
                             f"shape {tuple(t.shape)} in target vs {tuple(o.shape)} in online")
    if t_params:
        torch._foreach_lerp_(t_params, o_params, 1.0 - momentum)   # t += (1 - m) (o - t)
    for t, o in zip(t_bufs, o_bufs):
        if t.is_floating_point():
            t.lerp_(o, 1.0 - momentum)
        else:
            t.copy_(o)


def cosine_momentum(step: int, total_steps: int, base: float) -> float:
    """BYOL's schedule ``tau_k = 1 - (1 - base) * (cos(pi k / K) + 1) / 2``: ``base`` at k=0, 1 at k=K.

    ``step`` is the 0-based index k of the update (the engine's 1-based ``on_step_end(step, ...)``
    passes ``step - 1``, so the first update uses ``base``); past K it stays 1.
    (Grill et al. 2020, "Bootstrap your own latent", section 3.2.)
    """
    step = checks.integer("step", step, min=0)
    total_steps = checks.integer("total_steps", total_steps, min=1)
    base = checks.number("base", base, min=0.0, max=1.0)
    k = min(step, total_steps)
    return 1.0 - (1.0 - base) * (math.cos(math.pi * k / total_steps) + 1.0) / 2.0


# --------------------------------------------------------------------------------------------------
# the views hook of the image methods
# --------------------------------------------------------------------------------------------------
VIEW_RECIPES = ("auto", "simclr", "byol", "weak", "spectrogram")
# At or below this size (digits are 8x8) crops to 8% of the area and blur destroy the image, so
# "auto" uses the weak recipe (mild crops, noise) instead of the paper recipe.
WEAK_MAX_SIZE = 16

Views = str | Callable[..., torch.Tensor]


def check_views(views: Any) -> Views:
    """``views`` must be a recipe name or a callable ``f(x, generator=None) -> one view``."""
    if callable(views):
        return views
    return checks.choice("views", views, VIEW_RECIPES)


def check_images(x: Any, name: str = "batch") -> torch.Tensor:
    """Float images (B, C, H, W) with C in {1, 3}, as ``Dataset.batch`` returns them; B >= 2 (views
    of one image have nothing to be contrasted or normalised against)."""
    return checks.images(name, x, min_batch=2)


def resolve_views(views: Views, image_size: int, paper: str = "simclr") -> Views:
    """``"auto"`` -> ``"weak"`` for images <= 16 px, else the method's ``paper`` recipe."""
    views = check_views(views)
    if views == "auto":
        return "weak" if image_size <= WEAK_MAX_SIZE else paper
    return views


def two_views(x: torch.Tensor, views: Views = "auto", *, paper: str = "simclr",
              generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Two augmented views of images ``x`` (B, C, H, W), made on ``x.device`` with per-sample randomness.

    ``views`` is ``"auto"`` (see :func:`resolve_views`), ``"simclr"``, ``"byol"`` (asymmetric blur and
    solarize), ``"weak"``, ``"spectrogram"`` (``sslkit.pretext.audio.spectrogram_views``: SpecAugment
    masks, time shift, gain; what ``sslkit.create`` sets for spectrogram data), or a callable
    ``f(x, generator=None) -> view`` (e.g. a ``sslkit.pretext.ViewRecipe``), called once per view.
    """
    from sslkit import pretext
    recipe = resolve_views(views, min(x.shape[-2:]), paper)
    if callable(recipe):
        return recipe(x, generator=generator), recipe(x, generator=generator)
    from sslkit.pretext import audio
    fn = {"simclr": pretext.simclr_views, "byol": pretext.byol_views, "weak": pretext.weak_views,
          "spectrogram": audio.spectrogram_views}[recipe]
    return fn(x, generator=generator)


# --------------------------------------------------------------------------------------------------
# logging helpers
# --------------------------------------------------------------------------------------------------
@torch.no_grad()
def normalized_std(z: torch.Tensor) -> torch.Tensor:
    """Mean over dims of the per-dim std of L2-normalised embeddings (B, D) -> scalar.

    About ``1/sqrt(D)`` for well-spread embeddings, 0 at complete collapse (Chen & He 2021, SimSiam
    section 4.1).
    """
    return F.normalize(z.detach().float(), dim=1).std(dim=0).mean()


@torch.no_grad()
def view_similarity(z1: torch.Tensor, z2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(pos_sim, neg_sim): mean cosine of matching pairs (z1[i], z2[i]) and of all other pairs (i != j)."""
    n1, n2 = F.normalize(z1.detach().float(), dim=1), F.normalize(z2.detach().float(), dim=1)
    sim = n1 @ n2.T                                             # (B, B)
    b = sim.shape[0]
    pos = sim.diagonal().mean()
    neg = (sim.sum() - sim.diagonal().sum()) / max(b * (b - 1), 1)
    return pos, neg
