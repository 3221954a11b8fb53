"""The one registry behind ``sslkit.data``, ``sslkit.methods`` and ``sslkit.backbones``: name -> entry.

    reg = Registry("sslkit.methods", modules=("simclr", "moco"))  # modules that add entries on import
    reg.add("simclr", entry); reg.names(); reg.get("simclr")      # unknown names: a ValueError listing all

Each entry is added once, under the name its module gives it; the modules are imported on the first
question, so importing a package stays light.
"""
from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import Generic, TypeVar

from sslkit import checks

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, package: str, modules: Sequence[str] = ()) -> None:
        self.package = package
        self.modules = tuple(modules)     # imported on first use; each adds its entries
        self.entries: dict[str, T] = {}
        self.loaded = not self.modules

    def add(self, name: str, entry: T) -> T:
        self.entries[name] = entry
        return entry

    def load(self) -> None:
        if not self.loaded:
            for mod in self.modules:
                importlib.import_module(f"{self.package}.{mod}")
            self.loaded = True  # only once every module registered: a failed import is retried (and raises again)

    def names(self) -> list[str]:
        """Every registered name, in registration order."""
        self.load()
        return list(self.entries)

    def get(self, name: str) -> T:
        """The entry of ``name``; an unknown name raises a ValueError that lists the allowed ones."""
        checks.choice("name", name, self.names())
        return self.entries[name]
