"""Device selection: the one place that decides where tensors live.

Nothing else in the kit hard-codes a device; functions take tensors and work on ``x.device``.
"""
from __future__ import annotations

import os

import torch

_ALLOWED = ("cuda", "mps", "cpu")


def device(prefer: str | None = None) -> torch.device:
    """Return the best available device: cuda, then mps, then cpu.

    ``prefer`` (or the ``SSLKIT_DEVICE`` environment variable, which wins over auto-detection but not
    over an explicit ``prefer``) forces one, e.g. ``"cpu"`` or ``"cuda:1"``. Asking for a device that is
    not available raises ``ValueError`` rather than failing later inside torch.
    """
    choice = prefer if prefer is not None else os.environ.get("SSLKIT_DEVICE") or None
    if choice is None:
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    source = "prefer" if prefer is not None else "SSLKIT_DEVICE"
    try:
        dev = torch.device(choice)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"{source}={choice!r} is not a device; allowed: {', '.join(_ALLOWED)} "
                         f"(optionally with an index, e.g. 'cuda:0')") from err
    if dev.type not in _ALLOWED:
        raise ValueError(f"{source}={choice!r}: device type {dev.type!r} is not supported; "
                         f"allowed: {', '.join(_ALLOWED)}")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"{source}={choice!r} but CUDA is not available on this machine; use 'cpu'")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ValueError(f"{source}={choice!r} but only {torch.cuda.device_count()} CUDA device(s) exist")
    if dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ValueError(f"{source}={choice!r} but MPS is not available on this machine; use 'cpu'")
    return dev
