"""Losses compute in (at least) float32, also when the training step runs under bf16/fp16 autocast.

On CUDA ``fit`` runs the step under bf16 autocast, so embeddings arrive as bfloat16 (8 bits of
mantissa). Softmaxes over temperature-scaled logits, (D, D) correlation matrices and variances lose
too much precision there, so every loss upcasts its half-precision inputs with :func:`up` and runs
under :func:`full_precision`, which switches autocast off (otherwise autocast would cast the matmuls
back to bf16). float64 inputs stay float64 (tests compare against float64 references).
"""
from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import torch

F = TypeVar("F", bound=Callable[..., Any])

_HALF = (torch.float16, torch.bfloat16)


def up(x: torch.Tensor) -> torch.Tensor:
    """``x`` as float32 if it is a half-precision float tensor; otherwise unchanged (differentiable)."""
    return x.float() if x.dtype in _HALF else x


def _device_type(args: tuple, kwargs: dict) -> str | None:
    for a in (*args, *kwargs.values()):
        if isinstance(a, (list, tuple)) and a:
            a = a[0]
        if isinstance(a, torch.Tensor):
            return a.device.type
    return None


def full_precision(fn: F) -> F:
    """Decorator: run ``fn`` with autocast disabled on its inputs' device (no-op without autocast)."""
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        dev = _device_type(args, kwargs)
        if dev is None or not torch.amp.is_autocast_available(dev):
            return fn(*args, **kwargs)
        with torch.autocast(device_type=dev, enabled=False):
            return fn(*args, **kwargs)
    return wrapper  # type: ignore[return-value]
