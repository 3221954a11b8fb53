"""A tiny registry so ``sslkit.create("simclr", ...)`` works from the CLI and notebooks."""
from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from sslkit import checks

_REGISTRY: dict[str, Callable[..., Any]] = {}
_DESCRIPTIONS: dict[str, str] = {}
# Method modules, imported on first use of the registry (each registers itself).
_MODULES = ("simclr", "moco", "byol", "simsiam", "barlow_twins", "vicreg", "dino", "mae",
            "autoencoder", "rotation", "jigsaw", "mlm", "cpc", "next_frame", "wav2vec")
_loaded = False


def register(name: str, description: str = "") -> Callable:
    """Decorator for a factory ``f(data=None, backbone=None, **config) -> Method``."""
    def deco(factory: Callable) -> Callable:
        _REGISTRY[name] = factory
        _DESCRIPTIONS[name] = description or (factory.__doc__ or "").strip().split("\n")[0]
        return factory
    return deco


def _ensure_loaded() -> None:
    global _loaded
    if not _loaded:
        for mod in _MODULES:
            importlib.import_module(f"sslkit.methods.{mod}")
        _loaded = True  # only once every module registered: a failed import is retried (and raises again)


def names() -> list[str]:
    """Registered method names."""
    _ensure_loaded()
    return list(_REGISTRY)


def describe() -> dict[str, str]:
    """name -> one-line description."""
    _ensure_loaded()
    return dict(_DESCRIPTIONS)


def create(name: str, data: Any = None, backbone: Any = None, **config: Any) -> Any:
    """Build method ``name``.

    Args:
        data: a ``sslkit.data.Dataset`` (or None); gives input shape, channels, vocabulary, so a default
            backbone can be chosen.
        backbone: None (default for the data), a backbone name (``sslkit.backbones.names()``) or an
            ``nn.Module`` with ``forward_features`` and ``embed_dim``.
        **config: method hyper-parameters (see each method's config dataclass).

    Raises ValueError when ``data`` is of a kind the method does not train on (``method.kinds``).
    With spectrogram data (``load("spoken_digits", representation="log_mel")``), ``views="auto"``
    becomes ``"spectrogram"``.
    """
    checks.choice("name", name, names())
    method = _REGISTRY[name](data=data, backbone=backbone, **config)
    kind = getattr(data, "kind", None)
    kinds = tuple(getattr(method, "kinds", ()))
    if kind is not None and kinds and kind not in kinds:
        raise ValueError(f"method {name!r} trains on {' or '.join(kinds)} data, but data={data.name!r} "
                         f"holds {kind} data; choose a method for {kind} data or another dataset")
    # Views that suit the data: image recipes (colour, crops, flips) are wrong for spectrograms, so
    # views="auto" becomes "spectrogram" (sslkit.pretext.audio). Set in the config, so a checkpoint
    # records it and load_method rebuilds the same method.
    cfg = getattr(method, "config", None)
    if kind == "spectrogram" and getattr(cfg, "views", None) == "auto":
        cfg.views = "spectrogram"
    return method
