"""SSL methods, one file each, one interface (:class:`Method`)."""
from sslkit.methods.base import Method, cosine_momentum
from sslkit.methods.registry import create, describe, names, register

__all__ = ["Method", "cosine_momentum", "create", "describe", "names", "register"]
