"""sslkit: a notebook-first teaching kit for self-supervised learning.

Public entry points (stable; notebooks and exercises depend on them):

    sslkit.device()                      -> torch.device (cuda, then mps, then cpu; SSLKIT_DEVICE overrides)
    sslkit.data.load(name, split=...)    -> sslkit.data.Dataset (whole dataset as tensors)
    sslkit.data.names()                  -> list of dataset names
    sslkit.create("simclr", data=ds)     -> an SSL method (nn.Module with training_step / embed / on_step_end)
    sslkit.method_names()                -> list of method names
    sslkit.fit(method, data, minutes=1)  -> training history
    sslkit.losses, sslkit.pretext, sslkit.backbones, sslkit.heads, sslkit.eval,
    sslkit.widgets, sslkit.exercises,
    sslkit.zoo                           -> submodules, imported on first use
"""
from __future__ import annotations

import importlib
from typing import Any

from sslkit.devices import device

__version__ = "0.1.0"

_SUBMODULES = {
    "data", "pretext", "losses", "backbones", "heads", "methods", "train", "eval",
    "widgets", "exercises", "cli", "demo", "distributed", "devices", "zoo",
}
# Names re-exported lazily from submodules: name -> (module, attribute).
_LAZY = {
    "create": ("sslkit.methods", "create"),
    "method_names": ("sslkit.methods", "names"),
    "fit": ("sslkit.train", "fit"),
}


def __getattr__(name: str) -> Any:
    # Submodules are imported on first use so `import sslkit` stays fast and light.
    if name in _SUBMODULES:
        return importlib.import_module(f"sslkit.{name}")
    if name in _LAZY:
        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'sslkit' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | _SUBMODULES | set(_LAZY))


__all__ = ["device", "__version__", *sorted(_LAZY)]
