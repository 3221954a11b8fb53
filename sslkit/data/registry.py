"""The dataset registry: each dataset module registers its builder here on import."""
from __future__ import annotations

import importlib
from collections.abc import Callable

from sslkit import checks
from sslkit.data.base import Dataset, DatasetInfo, Kind

REGISTRY: dict[str, DatasetInfo] = {}

# Modules that register datasets; imported on first use of the registry.
_MODULES = ("digits", "shapes", "photos", "corpus", "waves", "moving_digits", "spoken_digits", "real")
_loaded = False


def register(name: str, *, kind: Kind, splits: tuple[str, ...], embedded: bool,
             description: str) -> Callable[[Callable[..., Dataset]], Callable[..., Dataset]]:
    """Decorator: ``@register("shapes", kind="image", splits=("train", "test"), ...)``."""
    def deco(builder: Callable[..., Dataset]) -> Callable[..., Dataset]:
        REGISTRY[name] = DatasetInfo(name, kind, tuple(splits), embedded, description, builder)
        return builder
    return deco


def _ensure_loaded() -> None:
    global _loaded
    if not _loaded:
        for mod in _MODULES:
            importlib.import_module(f"sslkit.data.{mod}")
        _loaded = True  # only once every module registered: a failed import is retried (and raises again)


def names(embedded: bool | None = None) -> list[str]:
    """Dataset names; ``embedded=True`` lists only those that work offline."""
    _ensure_loaded()
    return [n for n, e in REGISTRY.items() if embedded is None or e.embedded == embedded]


def info(name: str) -> DatasetInfo:
    """Registry entry (kind, splits, description) of dataset ``name``."""
    checks.choice("name", name, names())
    return REGISTRY[name]
