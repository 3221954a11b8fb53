"""The model zoo: converged reference runs, built by the kit itself, loaded in a second.

    sslkit.zoo.names()                        # every entry; names(built=True): those with files
    model = sslkit.zoo.load("simclr_shapes")  # the trained Method, eval mode, sha256 checked
    card = sslkit.zoo.card("simclr_shapes")   # recipe, command, history, hardware, metrics

    sslkit zoo list                           # entries, purpose, metrics, files present?
    sslkit zoo build simclr_shapes            # retrain from scratch: same seed -> same weights
    sslkit zoo build --all

Entries are recipes in code (:mod:`sslkit.zoo.entries`); their files - ``NAME.pt`` (float16
weights, ``torch.load(weights_only=True)``) and ``NAME.json`` (the card) - live in
``sslkit/zoo/weights/`` and ship with the package. See ``sslkit/zoo/README.md``.
"""
from __future__ import annotations

import os

from sslkit.zoo import extras  # the lesson-specific measurements stored in the cards
from sslkit.zoo.entries import ENTRIES, Entry, entry
from sslkit.zoo.files import WEIGHTS_DIR, ZooError, card, load, paths, verify


def names(built: bool | None = None, root: str | os.PathLike | None = None) -> list[str]:
    """Entry names; ``built=True`` only those whose weights and card exist (False: the others)."""
    if built is None:
        return list(ENTRIES)
    return [n for n in ENTRIES if all(p.is_file() for p in paths(n, root)) == built]


def build(name: str, **kwargs):
    """Retrain entry ``name`` from scratch and write its files; see :func:`sslkit.zoo.builder.build`."""
    from sslkit.zoo.builder import build as _build
    return _build(name, **kwargs)


__all__ = ["names", "load", "card", "build", "entry", "Entry", "ENTRIES", "ZooError", "verify",
           "WEIGHTS_DIR", "extras"]
