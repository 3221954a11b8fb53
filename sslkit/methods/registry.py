"""A tiny registry so ``sslkit.create("simclr", ...)`` works from the CLI and notebooks."""
from __future__ import annotations

import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sslkit.registry import Registry


@dataclass(frozen=True)
class _Entry:
    factory: Callable[..., Any]
    description: str
    kinds: tuple[str, ...]


# Method modules, imported on first use of the registry (each registers itself).
METHODS: Registry[_Entry] = Registry("sslkit.methods", (
    "simclr", "moco", "byol", "simsiam", "barlow_twins", "vicreg", "dino", "mae", "autoencoder",
    "rotation", "jigsaw", "mlm", "cpc", "next_frame", "swav", "gpt", "word2vec", "wav2vec"))
ALL_KINDS = ("image", "text", "signal", "clip")   # a factory whose method class is unknown: any data


def register(method: type | str, description: str = "") -> Callable:
    """Decorator for a factory ``f(data=None, backbone=None, **config) -> Method``:
    ``@register(SimCLR, "one line")`` registers it under ``SimCLR.name`` for ``SimCLR.kinds`` of data
    (``@register("name")`` also works: the kinds then come from the factory's return annotation)."""
    def deco(factory: Callable) -> Callable:
        if isinstance(method, str):
            name, kinds = method, _annotated_kinds(factory)
        else:
            name, kinds = method.name, tuple(method.kinds)
        METHODS.add(name, _Entry(factory, description or (factory.__doc__ or "").strip().split("\n")[0],
                                 kinds))
        return factory
    return deco


def _annotated_kinds(factory: Callable) -> tuple[str, ...]:
    try:
        method_cls = typing.get_type_hints(factory).get("return")   # the factory's "-> SimCLR"
    except (NameError, TypeError):                                   # unresolvable annotations
        method_cls = None
    return tuple(getattr(method_cls, "kinds", ALL_KINDS))


def names() -> list[str]:
    """Registered method names."""
    return METHODS.names()


def describe() -> dict[str, str]:
    """name -> one-line description."""
    return {n: METHODS.entries[n].description for n in METHODS.names()}


def kinds(name: str) -> tuple[str, ...]:
    """The data kinds method ``name`` trains on (its class's ``kinds``), e.g. ``("image",)``."""
    return METHODS.get(name).kinds


def create(name: str, data: Any = None, backbone: Any = None, **config: Any) -> Any:
    """Build method ``name``.

    Args:
        data: a ``sslkit.data.Dataset`` (or None); gives input shape, channels, vocabulary, so a default
            backbone can be chosen.
        backbone: None (default for the data), a backbone name (``sslkit.backbones.names()``) or an
            ``nn.Module`` with ``forward_features`` and ``embed_dim``.
        **config: method hyper-parameters (see each method's config dataclass).

    A combination that cannot train fails here with a ValueError naming it: data of a kind the
    method does not train on, a backbone for another kind of data, a ViT patch size that does not
    divide the images (and each method's own checks, e.g. MAE needs a ViT).
    With spectrogram data (``load("spoken_digits", representation="log_mel")``), ``views="auto"``
    becomes ``"spectrogram"``.
    """
    from sslkit import backbones
    allowed = kinds(name)
    data_kind = getattr(data, "kind", None)
    if isinstance(data_kind, str) and data_kind not in allowed:
        fits = [m for m in names() if data_kind in kinds(m)]
        raise ValueError(f"{name} trains on {' or '.join(allowed)} data, but data="
                         f"{getattr(data, 'name', '?')!r} holds {data_kind} data; methods for "
                         f"{data_kind} data: {', '.join(fits)}")
    if isinstance(backbone, str) and backbone in backbones.names():
        backbone_kind = backbones.input_kind(backbone)
    else:                                       # a module says what it encodes (if it does)
        backbone_kind = getattr(backbone, "input_kind", None)
    if isinstance(backbone_kind, str) and backbone_kind not in allowed:
        shown = repr(backbone) if isinstance(backbone, str) else type(backbone).__name__
        fits = [b for k in allowed for b in backbones.names(k)]
        raise ValueError(f"backbone={shown} encodes {backbone_kind} data; {name} trains on "
                         f"{' or '.join(allowed)} data: use one of {', '.join(fits)}")
    method = METHODS.get(name).factory(data=data, backbone=backbone, **config)
    # Views that suit the data: image recipes (colour, crops, flips) are wrong for spectrograms, so
    # views="auto" becomes "spectrogram" (sslkit.pretext.audio). Set in the config, so a checkpoint
    # records it and load_method rebuilds the same method.
    cfg = getattr(method, "config", None)
    if data_kind == "spectrogram" and getattr(cfg, "views", None) == "auto":
        cfg.views = "spectrogram"
    return method
