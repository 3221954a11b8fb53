"""Test helper: record what a piece of code does that would hurt on an accelerator.

    with DeviceGuard() as g:
        fn(x)
    assert not g.reads and not g.uploads and not g.float64

``reads``: calls that read tensor values back to the host (``item``, ``bool(t)``, ``int(t)``,
``tolist``, ``cpu``, ``nonzero``, ...) - each is a CPU-GPU sync on CUDA. ``uploads``: tensors made
from host data (``torch.tensor``) or copied from the CPU to another device - a sync on CUDA too.
``float64``: ops that produced a float64 tensor (MPS has none). Run the code on the "meta" device to
stand in for an accelerator (no values, so nothing can be read back), or on the CPU for ``float64``.
"""
from __future__ import annotations

import torch
from torch.overrides import TorchFunctionMode

READS = {"item", "tolist", "__bool__", "__int__", "__float__", "__index__", "nonzero", "cpu", "numpy",
         "unique", "equal"}
UPLOADS = {"tensor", "as_tensor"}


def _tensors(x):
    if isinstance(x, torch.Tensor):
        yield x
    elif isinstance(x, (list, tuple)):
        for v in x:
            yield from _tensors(v)
    elif isinstance(x, dict):
        for v in x.values():
            yield from _tensors(v)


class DeviceGuard(TorchFunctionMode):
    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []
        self.reads: list[str] = []
        self.uploads: list[str] = []
        self.float64: list[str] = []
        self.outputs_of: dict[str, list[int]] = {}  # func name -> ids of its tensor outputs
        self.events: list[tuple[str, list, list]] = []  # (name, input tensors, output tensors), kept alive

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = getattr(func, "__name__", str(func))
        out = func(*args, **kwargs)
        self.calls.append(name)
        if name in READS:
            self.reads.append(name)
        if name in UPLOADS and not (args and isinstance(args[0], torch.Tensor)):  # from host data
            self.uploads.append(name)
        if name in ("to", "copy_", "cuda"):
            srcs = [t for t in _tensors(args[1:] if name == "copy_" else args[:1])]
            dst = next(iter(_tensors(out)), None)
            if dst is not None and any(s.device.type == "cpu" for s in srcs) and dst.device.type != "cpu":
                self.uploads.append(name)
        self.events.append((name, list(_tensors((args, kwargs))), list(_tensors(out))))
        for t in _tensors(out):
            self.outputs_of.setdefault(name, []).append(id(t))
            if t.dtype == torch.float64:
                self.float64.append(name)
        return out
