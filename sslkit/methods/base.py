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
    default_backbone(data, backbone, kind=...)   None / name / module -> a validated backbone (kind,
                                                 patch size vs image size checked)
    make_config(Config, config)                  dataclass config; unknown keys -> ValueError
    ema_update(target, online, momentum)         target <- m * target + (1 - m) * online
    cosine_momentum(step, total_steps, base)     BYOL's momentum schedule, base -> 1
    frozen_copy(module)                          a deep copy that never receives gradients
    sync_batchnorm(method)                       SyncBatchNorm for DDP, except ``method.local_batchnorm``
    two_views(x, views, ...)                     the views hook of the image methods
    resolve_views(views, size, paper)            what views="auto" means at an image size
    view_recipe_of(views, size, paper)           the ViewRecipe(s) behind a views setting
    normalized_std(z), view_similarity(z1, z2)   collapse monitor; mean cosine of positives/negatives
"""
from __future__ import annotations

import copy
import dataclasses
import math
import weakref
from collections.abc import Callable
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from sslkit import checks
from sslkit.eval.diagnostics import normalized_std  # noqa: F401 (the methods log it: one definition)


class Method(nn.Module):
    """Base class. Subclasses set ``name``/``kinds`` and implement ``training_step``."""

    name: ClassVar[str] = "method"
    # Which dataset kinds the method trains on ("image", "text", "signal", "clip", "spectrogram").
    kinds: ClassVar[tuple[str, ...]] = ("image",)
    # Sensible default learning rate for the engine's optimiser (AdamW unless the method says otherwise).
    default_lr: ClassVar[float] = 1e-3
    # AdamW's (beta1, beta2) for the engine's optimiser: PyTorch's defaults unless the paper differs
    # (MAE: 0.95, a shorter memory of squared gradients that keeps ViT pre-training stable).
    adam_betas: ClassVar[tuple[float, float]] = (0.9, 0.999)
    # Submodules (attribute paths) whose BatchNorm layers keep per-process statistics under DDP:
    # ``sync_batchnorm`` leaves them alone (MoCo's key encoder, which uses shuffle/split BN).
    local_batchnorm: ClassVar[tuple[str, ...]] = ()
    # True when some trainable parameters get no gradient in some steps (SwAV's frozen prototypes):
    # ``fit`` then builds DDP with ``find_unused_parameters=True`` (a search of the graph every step).
    find_unused_parameters: bool = False
    # Side of the images the method is built for (from ``data`` at create); None when unknown.
    # Image methods use it to say which view recipe "auto" stands for (``view_recipe``).
    image_size: int | None = None

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


def _check_backbone_fits(name: str, module_kind: str | None, patch: int | None,
                         facts: dict[str, Any]) -> None:
    """The backbone encodes the data's kind, and the data's images are whole patches of a ViT."""
    from sslkit import backbones
    # an image backbone also encodes a spectrogram (a (C, F, T) grid), e.g. the plain convnet
    image_on_spec = module_kind == "image" and facts["kind"] == "spectrogram"
    if module_kind is not None and module_kind != facts["kind"] and not image_on_spec:
        raise ValueError(f"backbone={name} encodes {module_kind} data, but this method trains on "
                         f"{facts['kind']} data; {facts['kind']} backbones: "
                         f"{', '.join(backbones.names(facts['kind']))}")
    size = facts.get("image_size")
    if patch is not None and size is not None and size % patch:
        raise ValueError(f"backbone={name} cuts images into {patch}x{patch} patches, but the data's "
                         f"images are {size} px, not a multiple of patch_size={patch}; build the ViT "
                         f"with a patch_size that divides {size} (or pass the name 'vit_tiny' with data=)")


def default_backbone(data: Any = None, backbone: nn.Module | str | None = None, *,
                     kind: str | None = None, options: dict[str, Any] | None = None) -> nn.Module:
    """Resolve the ``backbone`` argument of every method factory.

    Args:
        data: a ``sslkit.data.Dataset`` or None; gives kind, channels, image size, vocabulary.
        backbone: None (chosen by data: ``convnet`` for images <= 32 px, ``resnet18`` above,
            ``transformer`` for text, ``conv1d`` for signals, ``frames`` for clips), a name from
            ``sslkit.backbones.names()`` (built for ``data``), or an ``nn.Module`` with
            ``forward_features(x) -> (B, D)`` and an int ``embed_dim`` (used as is).
        kind: the data kind the method needs ("image", "text", "signal", "clip"); checked against
            ``data`` and used to pick the default when ``data`` is None.
        options: extra keyword arguments for a backbone built by name (e.g. MAE's
            ``{"positions": "sincos"}``); recorded with it, so checkpoints rebuild the same network.

    A backbone for another kind of data (a text backbone for an image method) or a ViT whose patch
    size does not divide the data's images is a ValueError here, before any training.
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
        if data is None and kind is None:
            return backbone
        facts = _data_facts(data, kind)   # still check the data kind
        _check_backbone_fits(type(backbone).__name__, getattr(backbone, "input_kind", None),
                             getattr(backbone, "patch_size", None), facts)
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
    _check_backbone_fits(repr(backbone), backbones.input_kind(backbone), None, facts)
    if facts["kind"] == "text" and facts.get("vocab_size") is None:
        raise ValueError(f"backbone={backbone!r} for text needs data=<a text Dataset> (for its vocabulary); "
                         f"got data={data!r}")
    kwargs = {**_backbone_kwargs(facts), **(options or {})}
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


class EMA:
    """``target <- m * target + (1 - m) * online`` over tensor lists built and checked once.

    The lists (parameters; float buffers, which follow by EMA; integer buffers such as BatchNorm's
    ``num_batches_tracked``, which are copied) are built on the first update and reused, so a step
    costs three foreach kernels instead of a walk over both module trees and one kernel per tensor.
    They are rebuilt (and checked again) when a registered tensor or submodule was replaced since:
    ``.to(device)`` replaces buffers, ``sync_batchnorm`` replaces BatchNorm modules. Spotting that
    takes one dict lookup per tensor and per submodule - no device work, no host-device sync.
    """

    def __init__(self, target: nn.Module, online: nn.Module) -> None:
        self.online = weakref.ref(online)
        self._build(target, online)

    def _build(self, target: nn.Module, online: nn.Module) -> None:
        t_params, o_params = list(target.parameters()), list(online.parameters())
        t_bufs, o_bufs = list(target.buffers()), list(online.buffers())
        if len(t_params) != len(o_params) or len(t_bufs) != len(o_bufs):
            raise ValueError("target and online must have the same architecture "
                             f"({len(t_params)} vs {len(o_params)} parameters)")
        for i, (t, o) in enumerate(zip(t_params + t_bufs, o_params + o_bufs)):
            if t.shape != o.shape:  # shapes are Python facts: no device sync
                raise ValueError(f"target and online must have the same architecture: tensor {i} has "
                                 f"shape {tuple(t.shape)} in target vs {tuple(o.shape)} in online")
        floats = [i for i, t in enumerate(t_bufs) if t.is_floating_point()]
        ints = [i for i, t in enumerate(t_bufs) if not t.is_floating_point()]
        self.params = (t_params, o_params)
        self.float_bufs = ([t_bufs[i] for i in floats], [o_bufs[i] for i in floats])
        self.int_bufs = ([t_bufs[i] for i in ints], [o_bufs[i] for i in ints])
        # (dict, key, value) of every parameter, buffer and submodule of both trees, and the size
        # of each dict: the registrations the lists above were read from.
        self._registered = [(d, k, v) for m in (*target.modules(), *online.modules())
                            for d in (m._parameters, m._buffers, m._modules) for k, v in d.items()]
        self._sizes = [(d, len(d)) for m in (*target.modules(), *online.modules())
                       for d in (m._parameters, m._buffers, m._modules)]

    def stale(self) -> bool:
        """True when a tensor or submodule was replaced, added or removed since the lists were built."""
        return (any(len(d) != n for d, n in self._sizes)
                or any(k not in d or d[k] is not v for d, k, v in self._registered))

    @torch.no_grad()
    def update(self, target: nn.Module, online: nn.Module, momentum: float) -> None:
        if self.online() is not online or self.stale():
            self.online = weakref.ref(online)
            self._build(target, online)
        if self.params[0]:
            torch._foreach_lerp_(self.params[0], self.params[1], 1.0 - momentum)   # t += (1 - m)(o - t)
        if self.float_bufs[0]:
            torch._foreach_lerp_(self.float_bufs[0], self.float_bufs[1], 1.0 - momentum)
        if self.int_bufs[0]:
            torch._foreach_copy_(self.int_bufs[0], self.int_bufs[1])


# One EMA per target module, made on its first update (weak keys: it goes when the target goes).
_EMAS: weakref.WeakKeyDictionary[nn.Module, EMA] = weakref.WeakKeyDictionary()


def ema_update(target: nn.Module, online: nn.Module, momentum: float) -> None:
    """``target <- momentum * target + (1 - momentum) * online`` for parameters and float buffers.

    Integer buffers (e.g. BatchNorm's ``num_batches_tracked``) are copied. ``momentum=1`` leaves the
    target unchanged, ``momentum=0`` copies the online network. The tensor lists are cached per
    target (see :class:`EMA`): the architectures are compared on the first call, and again only
    after a tensor or submodule of either network was replaced.
    """
    momentum = checks.number("momentum", momentum, min=0.0, max=1.0)
    ema = _EMAS.get(target)
    if ema is None:
        ema = _EMAS[target] = EMA(target, online)   # raises here for mismatched architectures
    ema.update(target, online, momentum)


def sync_batchnorm(method: nn.Module) -> nn.Module:
    """``method`` with every BatchNorm layer converted to ``nn.SyncBatchNorm`` (statistics over the
    global batch under DDP, as in one process), except inside the submodules that
    ``method.local_batchnorm`` names (attribute paths such as ``"key_backbone"``): those keep
    per-process statistics (MoCo's shuffle-BN key encoder must never see the whole batch at once).

    Converts in place (the parameter and buffer tensors are kept) and returns ``method``; call it
    before building the optimiser, as ``nn.SyncBatchNorm.convert_sync_batchnorm``.
    """
    local = tuple(getattr(method, "local_batchnorm", ()))
    for path in local:
        try:
            method.get_submodule(path)
        except AttributeError:
            raise ValueError(f"local_batchnorm names {path!r}, which is not a submodule of "
                             f"{type(method).__name__}") from None

    def convert(module: nn.Module, prefix: str) -> None:
        for name, child in module.named_children():
            path = prefix + name
            if path in local:
                continue
            if isinstance(child, nn.modules.batchnorm._BatchNorm):
                setattr(module, name, nn.SyncBatchNorm.convert_sync_batchnorm(child))
            else:
                convert(child, path + ".")

    if isinstance(method, nn.modules.batchnorm._BatchNorm):
        return nn.SyncBatchNorm.convert_sync_batchnorm(method)
    convert(method, "")
    return method


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
VIEW_RECIPES = ("auto", "simclr", "cifar", "byol", "weak", "spectrogram")
# The views of the multi-crop methods (DINO, SwAV): 2 global + n_local local crops, or two views.
MULTICROP_VIEWS = ("auto", "multicrop", "simclr", "byol", "weak")

Views = str | Callable[..., torch.Tensor]


def check_views(views: Any) -> Views:
    """``views`` must be a recipe name or a callable ``f(x, generator=None) -> one view``."""
    if callable(views):
        return views
    return checks.choice("views", views, VIEW_RECIPES)


def keep_layout(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``v`` in the memory format of the batch ``like`` (channels-last for conv nets, see
    ``sslkit.train.step.memory_format``): ops that
    build fresh tensors (gather, grid_sample) return the default layout; the backbone should see
    the layout the engine chose. No copy when ``v`` already has it."""
    from sslkit.pretext import _inputs
    return v.contiguous(memory_format=_inputs.memory_format(like))


def check_multicrop_views(views: Any, n_local: Any) -> None:
    """The ``views`` and ``n_local`` settings of a multi-crop method (DINO, SwAV): local crops
    (``n_local`` > 0) need ``views`` "multicrop" or "auto"."""
    if not callable(views):
        checks.choice("views", views, MULTICROP_VIEWS)
    if n_local is not None:
        checks.integer("n_local", n_local, min=0)
        if n_local > 0 and views not in ("auto", "multicrop"):
            raise ValueError(f"n_local={n_local} needs views='multicrop' (or 'auto'); "
                             f"views={views!r} makes two global views only")


def resolve_views(views: Views, image_size: int, paper: str = "simclr", n_local: int | None = None
                  ) -> Views:
    """``"auto"`` -> the recipe name for ``image_size`` (``sslkit.pretext.auto_views``: "weak" at
    <= 16 px, "cifar" at <= 32 px, else ``paper``; ``paper="multicrop"`` gives "weak" or
    "multicrop", and "multicrop" whenever ``n_local`` > 0); other names and callables are
    returned as they are."""
    from sslkit.pretext import recipes
    if paper != "multicrop":
        views = check_views(views)
    if views == "auto":
        return recipes.auto_views(image_size, paper, n_local)
    return views


def view_recipe_of(views: Views, image_size: int | None, paper: str = "simclr") -> Any:
    """What a ``views`` setting makes at ``image_size``: a ``ViewRecipe`` when both views share one,
    a list ``[view 1, view 2]`` when they differ (BYOL), the callable itself when ``views`` is one;
    a string when ``views="auto"`` and the image size is not known yet (it is once the method
    was created with ``data=``)."""
    from sslkit.pretext import recipes
    views = check_views(views)
    if callable(views):
        return views
    if views == "auto" and image_size is None:
        return (f"auto: by image size ({recipes.auto_views(recipes.SMALL_MAX_SIZE, paper)!r} at <= "
                f"{recipes.SMALL_MAX_SIZE} px, {recipes.auto_views(recipes.CIFAR_MAX_SIZE, paper)!r} at <= "
                f"{recipes.CIFAR_MAX_SIZE} px, {recipes.auto_views(recipes.CIFAR_MAX_SIZE + 1, paper)!r} above)")
    name = resolve_views(views, image_size if image_size is not None else recipes.CIFAR_MAX_SIZE + 1, paper)
    r1, r2 = recipes.recipe_pair(name)
    return r1 if r1 == r2 else [r1, r2]


def data_image_size(data: Any) -> int | None:
    """The image side (smaller of H and W) of an image ``Dataset``; None for other data or None."""
    if data is None or getattr(data, "kind", None) != "image":
        return None
    return int(min(tuple(data.sample_shape)[-2:]))


def two_views(x: torch.Tensor, views: Views = "auto", *, paper: str = "simclr",
              generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Two augmented views of images ``x`` (B, C, H, W), made on ``x.device`` with per-sample randomness.

    ``views`` is ``"auto"`` (see :func:`resolve_views`), ``"simclr"``, ``"cifar"``, ``"byol"``
    (asymmetric blur and solarize), ``"weak"``, ``"spectrogram"`` (``sslkit.pretext.audio.SPECTROGRAM``:
    SpecAugment masks, time shift, gain; what ``sslkit.create`` sets for spectrogram data), or a
    callable ``f(x, generator=None) -> view`` (e.g. a ``sslkit.pretext.ViewRecipe``), called once per
    view. The views keep ``x``'s memory format (channels-last stays channels-last).
    """
    from sslkit.pretext import recipes
    recipe = resolve_views(views, min(x.shape[-2:]), paper)
    if callable(recipe):
        return (keep_layout(recipe(x, generator=generator), x),
                keep_layout(recipe(x, generator=generator), x))
    r1, r2 = recipes.recipe_pair(recipe)
    return r1(x, generator), r2(x, generator)


# --------------------------------------------------------------------------------------------------
# logging helpers
# --------------------------------------------------------------------------------------------------
@torch.no_grad()
@torch.no_grad()
def view_similarity(z1: torch.Tensor, z2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(pos_sim, neg_sim): mean cosine of matching pairs (z1[i], z2[i]) and of all other pairs (i != j)."""
    n1, n2 = F.normalize(z1.detach().float(), dim=1), F.normalize(z2.detach().float(), dim=1)
    sim = n1 @ n2.T                                             # (B, B)
    b = sim.shape[0]
    pos = sim.diagonal().mean()
    neg = (sim.sum() - sim.diagonal().sum()) / max(b * (b - 1), 1)
    return pos, neg
