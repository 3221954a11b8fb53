"""The dataset registry: each dataset module registers its builder here on import."""
from __future__ import annotations

from collections.abc import Callable

from sslkit.data.base import Dataset, DatasetInfo, Kind
from sslkit.registry import Registry

# Modules that register datasets; imported on first use of the registry.
DATASETS: Registry[DatasetInfo] = Registry(
    "sslkit.data", ("digits", "shapes", "photos", "corpus", "waves", "moving_digits", "spoken_digits", "real"))
REGISTRY = DATASETS.entries    # name -> DatasetInfo


def register(name: str, *, kind: Kind, splits: tuple[str, ...], embedded: bool,
             description: str) -> Callable[[Callable[..., Dataset]], Callable[..., Dataset]]:
    """Decorator: ``@register("shapes", kind="image", splits=("train", "test"), ...)``."""
    def deco(builder: Callable[..., Dataset]) -> Callable[..., Dataset]:
        DATASETS.add(name, DatasetInfo(name, kind, tuple(splits), embedded, description, builder))
        return builder
    return deco


def names(embedded: bool | None = None) -> list[str]:
    """Dataset names; ``embedded=True`` lists only those that work offline."""
    return [n for n in DATASETS.names() if embedded is None or REGISTRY[n].embedded == embedded]


def info(name: str) -> DatasetInfo:
    """Registry entry (kind, splits, description) of dataset ``name``."""
    return DATASETS.get(name)
