"""Datasets behind one entry point.

    >>> ds = sslkit.data.load("shapes")         # embedded, offline, deterministic by seed
    >>> ds.images.shape                          # uint8 (N, 3, 32, 32)
    >>> sslkit.data.names()                      # every dataset the kit knows

Embedded datasets are generated in code or come from installed packages; real ones (cifar10, stl10,
mnist) are downloaded into ``root`` by torchvision's own download code.
"""
from __future__ import annotations

import inspect
from typing import Any

from sslkit import checks
from sslkit.data.audio import log_mel, mfcc
from sslkit.data.base import KINDS, Dataset, DatasetInfo
from sslkit.data.real import DatasetUnavailable
from sslkit.data.registry import info, names, register

__all__ = ["Dataset", "DatasetUnavailable", "DatasetInfo", "KINDS", "load", "names", "info", "register",
           "log_mel", "mfcc"]


def load(name: str, split: str = "train", root: str = "data", seed: int = 0, **options: Any) -> Dataset:
    """Load dataset ``name`` (see ``names()``) as a :class:`Dataset` of tensors on the CPU.

    Args:
        name: dataset name.
        split: one of the dataset's splits (``info(name).splits``).
        root: folder real datasets are downloaded to / read from (embedded ones ignore it).
        seed: int seed; embedded datasets are a deterministic function of (split, seed, options).
        **options: dataset-specific options (e.g. ``size`` for ``digits``, ``n`` for ``shapes``).

    Move it to the GPU with ``ds.to(sslkit.device())``.
    """
    entry = info(name)
    checks.choice("split", split, entry.splits)
    seed = checks.integer("seed", seed)  # a Python int: NumPy integers overflow in `seed % 2**63`
    if not isinstance(root, (str, bytes)) and not hasattr(root, "__fspath__"):
        raise ValueError(f"root={root!r} must be a path (str or os.PathLike)")
    allowed = [p for p in inspect.signature(entry.builder).parameters if p not in ("split", "root", "seed")]
    for key in options:
        if key not in allowed:
            raise ValueError(f"{key}={options[key]!r} is not an option of dataset {name!r}; "
                             f"allowed options: {', '.join(allowed) or 'none'}")
    ds = entry.builder(split=split, root=str(root), seed=seed, **options)
    # Recorded so a checkpoint can rebuild a model for the same data (sslkit.train.load_method).
    ds.meta.setdefault("options", dict(options))
    ds.meta.setdefault("seed", seed)
    return ds
