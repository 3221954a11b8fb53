"""Input checks shared by the pretext ops (on top of :mod:`sslkit.checks`)."""
from __future__ import annotations

from typing import Any

import torch

from sslkit import checks


def image_batch(name: str, x: Any, channels: tuple[int, ...] = (1, 3)) -> torch.Tensor:
    """``x`` must be a float image batch ``(B, C, H, W)`` with C in ``channels`` (:func:`sslkit.checks.images`)."""
    return checks.images(name, x, channels)


def probability(name: str, p: Any) -> float:
    """A probability in [0, 1]."""
    return checks.number(name, p, min=0.0, max=1.0)


def ratio(name: str, value: Any, *, allow_zero: bool = True, allow_one: bool = False) -> float:
    """A fraction such as a mask ratio, in [0, 1) by default."""
    return checks.number(name, value, min=0.0, max=1.0, min_open=not allow_zero, max_open=not allow_one)


def size_pair(name: str, value: Any) -> tuple[int, int]:
    """An output size: int (square) or pair (H, W) of positive ints."""
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ValueError(f"{name}={value!r} must be an int or a pair (H, W)")
        return (checks.integer(f"{name}[0]", value[0], min=1), checks.integer(f"{name}[1]", value[1], min=1))
    v = checks.integer(name, value, min=1)
    return v, v
