"""SSL methods, one file each, one interface (:class:`Method`)."""
from sslkit.methods.base import Method
from sslkit.methods.registry import create, describe, names, register

__all__ = ["Method", "create", "describe", "names", "register"]
