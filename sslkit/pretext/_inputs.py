"""Input checks shared by the pretext ops (on top of :mod:`sslkit.checks`)."""
from __future__ import annotations

from typing import Any

import torch

from sslkit import checks

# How far outside [0, 1] a pixel may lie before the batch is rejected. Resizing with bicubic or
# Lanczos filters overshoots a few percent at sharp edges, which the ops clamp away harmlessly;
# [0, 255] images (max >> 1) and mean/std-normalised ones (min around -2) are far outside.
UNIT_RANGE_SLACK = 0.05


def image_batch(name: str, x: Any, channels: tuple[int, ...] = (1, 3), unit_range: bool = True) -> torch.Tensor:
    """``x`` must be a float image batch ``(B, C, H, W)`` with C in ``channels`` (:func:`sslkit.checks.images`)
    and, when ``unit_range``, values in [0, 1] (see :func:`check_unit_range`)."""
    checks.images(name, x, channels)
    if unit_range:
        check_unit_range(name, x)
    return x


def check_unit_range(name: str, x: torch.Tensor) -> torch.Tensor:
    """Float images must hold values in [0, 1]; [0, 255] or normalised ones raise a ValueError.

    Checked for CPU tensors only, where reading the min and max back costs one pass over the
    memory. On an accelerator the same read would make the host wait for the whole GPU queue (a
    host-device sync), and the views run inside every training step; there the check is left to
    the data (``Dataset.batch`` always gives [0, 1]) and this returns without reading any value.
    """
    if x.device.type != "cpu" or x.numel() == 0:
        return x
    lo, hi = (float(v) for v in torch.aminmax(x.detach()))
    if lo < -UNIT_RANGE_SLACK or hi > 1.0 + UNIT_RANGE_SLACK:
        hint = ("undo the mean/std normalisation (x * std + mean)" if lo < -UNIT_RANGE_SLACK
                else "divide by 255 (x / 255) to bring [0, 255] images to [0, 1]")
        raise ValueError(f"{name} has values in [{lo:.4g}, {hi:.4g}]; images must be floats in [0, 1]: "
                         f"{hint}")
    return x


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


def memory_format(x: torch.Tensor) -> torch.memory_format:
    """``torch.channels_last`` if the 4-D batch ``x`` is laid out channels-last, else contiguous.

    Ops that build a fresh tensor (``grid_sample``, ``gather``) return it in the default layout;
    converting their output back keeps the layout the engine chose for the backbone (channels-last
    convolutions on CUDA). A batch that is both (1 channel, or 1x1 images) counts as contiguous.
    """
    if x.ndim == 4 and x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
        return torch.channels_last
    return torch.contiguous_format
