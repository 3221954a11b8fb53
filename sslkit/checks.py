"""Argument checks shared by the whole kit.

Every public function validates its inputs with these so that bad input fails early with a
``ValueError`` that names the argument, the value it got and what is allowed - never a shape
mismatch from deep inside torch.
"""
from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import torch


def choice(name: str, value: Any, allowed: Iterable[Any]) -> Any:
    """``value`` must be one of ``allowed``."""
    allowed = list(allowed)
    if not any(_same(value, a) for a in allowed):
        raise ValueError(f"{name}={value!r} is not allowed; choose one of: "
                         f"{', '.join(repr(a) for a in allowed)}")
    return value


def _same(value: Any, allowed: Any) -> bool:
    """Equality without the surprises of ``in``: True is not 1, and an array never matches."""
    if isinstance(value, bool) != isinstance(allowed, bool):
        return False
    try:
        return bool(value == allowed)
    except (TypeError, ValueError, RuntimeError):  # e.g. numpy arrays / tensors: ambiguous truth
        return False


def integer(name: str, value: Any, *, min: int | None = None, max: int | None = None) -> int:
    """``value`` must be an int (not a bool, not a float) within [min, max].

    NumPy integers (``np.int64(3)``, what ``rng.integers`` returns) are accepted; the result is
    always a Python ``int``, so callers should use it instead of ``value`` (NumPy's fixed-width
    arithmetic overflows where Python's does not, e.g. ``np.int64(3) % 2**63``).
    """
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name}={value!r} must be an int ({type(value).__name__} given)")
    value = int(value)
    _bounds(name, value, min, max, "")
    return value


def number(name: str, value: Any, *, min: float | None = None, max: float | None = None,
           min_open: bool = False, max_open: bool = False, allow_inf: bool = False) -> float:
    """``value`` must be a real number within the interval; ``*_open`` excludes that end.

    NumPy scalars are accepted (the result is a Python ``float``). NaN never passes; infinities
    only with ``allow_inf=True`` (``minutes=inf``, ``temperature=inf`` or ``lr=inf`` are mistakes).
    """
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name}={value!r} must be a number ({type(value).__name__} given)")
    value = float(value)
    if value != value:
        raise ValueError(f"{name}={value!r} must be a number, not NaN")
    if not allow_inf and math.isinf(value):
        raise ValueError(f"{name}={value!r} must be a finite number (infinity is not allowed)")
    lo_ok = min is None or (value > min if min_open else value >= min)
    hi_ok = max is None or (value < max if max_open else value <= max)
    if not (lo_ok and hi_ok):
        lo = "(-inf" if min is None else ("(" if min_open else "[") + f"{min:g}"
        hi = "inf)" if max is None else f"{max:g}" + (")" if max_open else "]")
        raise ValueError(f"{name}={value!r} is out of range; allowed: {lo}, {hi}")
    return value


def number_range(name: str, value: Any, *, min: float | None = None, max: float | None = None
                 ) -> tuple[float, float]:
    """``value`` must be a pair (lo, hi) with lo <= hi, both within [min, max]."""
    if not isinstance(value, Sequence) or len(value) != 2:
        raise ValueError(f"{name}={value!r} must be a pair (low, high)")
    lo = number(f"{name}[0]", value[0], min=min, max=max)
    hi = number(f"{name}[1]", value[1], min=min, max=max)
    if lo > hi:
        raise ValueError(f"{name}={tuple(value)!r}: low must be <= high")
    return lo, hi


def tensor(name: str, value: Any, *, ndim: int | Sequence[int] | None = None,
           dtypes: Sequence[torch.dtype] | str | None = None) -> torch.Tensor:
    """``value`` must be a tensor of the given rank(s) and dtype family.

    ``dtypes`` may be a list of dtypes, ``"float"`` (any floating dtype) or ``"int"`` (any integer dtype).
    """
    if not isinstance(value, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor ({type(value).__name__} given)")
    if ndim is not None:
        ranks = (ndim,) if isinstance(ndim, int) else tuple(ndim)
        if value.ndim not in ranks:
            want = " or ".join(str(r) for r in ranks)
            raise ValueError(f"{name} must have rank {want}; got shape {tuple(value.shape)} "
                             f"(rank {value.ndim})")
    if dtypes == "float":
        if not value.is_floating_point():
            raise ValueError(f"{name} must be a floating-point tensor; got dtype {value.dtype}")
    elif dtypes == "int":
        if value.is_floating_point() or value.is_complex() or value.dtype == torch.bool:
            raise ValueError(f"{name} must be an integer tensor; got dtype {value.dtype}")
    elif dtypes is not None and value.dtype not in dtypes:
        raise ValueError(f"{name} must have dtype in {[str(d) for d in dtypes]}; got {value.dtype}")
    return value


def images(name: str, x: Any, channels: Sequence[int] = (1, 3), min_batch: int = 1) -> torch.Tensor:
    """``x`` must be a float image batch ``(B, C, H, W)`` with C in ``channels``, B >= ``min_batch``
    and a non-empty image size."""
    tensor(name, x, ndim=4, dtypes="float")
    min_batch = integer("min_batch", min_batch, min=0)
    channels = tuple(channels)
    if x.shape[1] not in channels:
        allowed = " or ".join(str(c) for c in channels)
        raise ValueError(f"{name} has {x.shape[1]} channel{'s' if x.shape[1] != 1 else ''} "
                         f"(shape {tuple(x.shape)}); allowed: "
                         f"{allowed} channel{'s' if channels != (1,) else ''}, layout (B, C, H, W)")
    if x.shape[0] < min_batch:
        raise ValueError(f"{name} has batch size {x.shape[0]} (shape {tuple(x.shape)}); allowed: at "
                         f"least {min_batch} sample{'s' if min_batch != 1 else ''}")
    if x.shape[2] < 1 or x.shape[3] < 1:
        raise ValueError(f"{name} has an empty image size {x.shape[2]}x{x.shape[3]} "
                         f"(shape {tuple(x.shape)}); allowed: H, W >= 1")
    return x


def waves(name: str, x: Any, channels: int, min_length: int, why: str) -> torch.Tensor:
    """``x`` must be a float signal batch ``(B, C, T)`` with C == ``channels`` and T >= ``min_length``
    (``why`` says what the encoder needs that many samples for)."""
    tensor(name, x, ndim=3, dtypes="float")
    if x.shape[1] != channels:
        raise ValueError(f"{name} has {x.shape[1]} channels (shape {tuple(x.shape)}, expected (B, C, T)); "
                         f"this backbone was built for in_channels={channels}")
    if x.shape[2] < min_length:
        raise ValueError(f"{name} has T={x.shape[2]} samples (shape {tuple(x.shape)}); this encoder needs "
                         f"T >= {min_length} ({why})")
    return x


def boolean(name: str, value: Any) -> bool:
    """``value`` must be ``True`` or ``False`` (not 0/1, not a string)."""
    if not isinstance(value, bool):
        raise ValueError(f"{name}={value!r} must be True or False")
    return value


def matching(*, ndim: int, min_batch: int = 1, why: str = "", **named: Any) -> None:
    """Every keyword argument must be a float tensor of rank ``ndim``, all of one shape, with at least
    ``min_batch`` rows (``why`` says what needs them). The first keyword names the batch size."""
    names = list(named)
    for name in names:
        tensor(name, named[name], ndim=ndim, dtypes="float")
    first = names[0]
    for name in names[1:]:
        same_shape(first, named[first], name, named[name])
    n = named[first].shape[0]
    if n < min_batch:
        raise ValueError(f"{first} has batch size {n}; allowed: at least {min_batch} samples"
                         + (f" ({why})" if why else ""))


def embeddings(*, min_batch: int = 1, why: str = "", **named: Any) -> None:
    """Each keyword argument must be a float (N, D) batch of embeddings, all of one shape, with
    N >= ``min_batch``: ``checks.embeddings(z1=z1, z2=z2, min_batch=2, why="...")``."""
    matching(ndim=2, min_batch=min_batch, why=why, **named)


def stacked_views(**named: Any) -> tuple[torch.Tensor, ...]:
    """Each keyword argument, a float (n, B, K) tensor of n views or a list of n (B, K) tensors,
    stacked into one (n, B, K) tensor; all must agree in (B, K). Returns them in order."""
    out = [_stack(name, x) for name, x in named.items()]
    names = list(named)
    for name, t in zip(names[1:], out[1:]):
        if t.shape[1:] != out[0].shape[1:]:
            raise ValueError(f"{names[0]} views have shape {tuple(out[0].shape[1:])} and {name} "
                             f"views {tuple(t.shape[1:])}; both must be (B, K)")
    return tuple(out)


def _stack(name: str, x: Any) -> torch.Tensor:
    if isinstance(x, (list, tuple)):
        if not x:
            raise ValueError(f"{name} is an empty list; give one (B, K) tensor per view")
        for i, t in enumerate(x):
            tensor(f"{name}[{i}]", t, ndim=2, dtypes="float")
            if t.shape != x[0].shape:
                raise ValueError(f"{name}[{i}] has shape {tuple(t.shape)}; every view must have shape "
                                 f"{tuple(x[0].shape)}")
        return torch.stack(list(x))
    return tensor(name, x, ndim=3, dtypes="float")


def mask(name: str, value: Any, shape: tuple[int, ...]) -> torch.Tensor:
    """A (B, N) mask of bools (True = masked) or 0/1 numbers, of the given shape, as float."""
    tensor(name, value)
    if tuple(value.shape) != shape:
        raise ValueError(f"{name} must have shape {shape}; got {tuple(value.shape)}")
    if value.is_complex():
        raise ValueError(f"{name} must be bool (True = masked) or 0/1 numbers; got dtype {value.dtype}")
    return value.to(torch.float32 if not value.is_floating_point() else value.dtype)


def same_shape(name_a: str, a: torch.Tensor, name_b: str, b: torch.Tensor) -> None:
    """Two tensors must have the same shape."""
    if a.shape != b.shape:
        raise ValueError(f"{name_a} and {name_b} must have the same shape; got {tuple(a.shape)} "
                         f"and {tuple(b.shape)}")


def _bounds(name: str, value: float, lo: float | None, hi: float | None, _: str) -> None:
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        lo_s = "-inf" if lo is None else f"{lo}"
        hi_s = "inf" if hi is None else f"{hi}"
        raise ValueError(f"{name}={value!r} is out of range; allowed: [{lo_s}, {hi_s}]")
