"""What keeps a run's work safe: the last consistent state, Ctrl-C handling, writable outputs.

* :class:`Snapshot` - an in-memory copy of the last consistent step (what a checkpoint holds):
  the method's parameters and buffers (EMA targets, queues, BatchNorm statistics, centres), the
  optimiser's state, and the loop position and random states. The engine takes it at every read
  point and goes back to it when a step turns out non-finite or is cut short by a second Ctrl-C,
  so the model, the History and any checkpoint always describe one step, never half of one.
* :class:`Interrupt` - the first Ctrl-C asks the loop to stop after the current step; a second one
  stops at once, except inside :meth:`Interrupt.shielded` blocks (taking a snapshot, the final
  save), which always finish.
* :func:`check_writable` - fail before the first step if an output cannot be written.
"""
from __future__ import annotations

import contextlib
import os
import signal
import tempfile
import threading
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn


class Snapshot:
    """The last consistent training state, kept on the training device (no host sync to take it)."""

    def __init__(self, method: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        self.method, self.opt = method, optimizer
        self.position: dict[str, Any] = {}       # loop counters, random states, History length
        self._keys: list[tuple[Any, ...]] = []
        self._copies: list[torch.Tensor] = []

    def _live(self) -> tuple[list[tuple[Any, ...]], list[torch.Tensor]]:
        """(key, tensor) of every tensor a step may change, in a fixed order."""
        keys, tensors = [], []
        for i, t in enumerate(self.method.parameters()):
            keys.append(("param", i)), tensors.append(t)
        for i, t in enumerate(self.method.buffers()):
            keys.append(("buffer", i)), tensors.append(t)
        for i, p in enumerate(p for g in self.opt.param_groups for p in g["params"]):
            for name, v in sorted(self.opt.state.get(p, {}).items()):
                if torch.is_tensor(v):
                    keys.append(("opt", i, name)), tensors.append(v)
        return keys, tensors

    @torch.no_grad()
    def take(self, position: dict[str, Any]) -> None:
        keys, tensors = self._live()
        if keys == self._keys:
            torch._foreach_copy_(self._copies, tensors)  # one multi-tensor copy on the device
        else:  # the first time, or the optimiser created its state since
            self._copies = [t.detach().clone() for t in tensors]
            self._keys = keys
        self.position = dict(position)

    @torch.no_grad()
    def restore(self) -> dict[str, Any]:
        """Copy the saved tensors back in place; drop optimiser state created since. Returns the
        saved position."""
        saved = set(self._keys)
        params = [p for g in self.opt.param_groups for p in g["params"]]
        for i, p in enumerate(params):
            state = self.opt.state.get(p)
            for name in [n for n, v in (state or {}).items() if torch.is_tensor(v)]:
                if ("opt", i, name) not in saved:
                    del state[name]
            if state is not None and not state:
                del self.opt.state[p]
        keys, tensors = self._live()
        if keys != self._keys:
            raise RuntimeError("the model or optimiser changed shape since the snapshot")
        if tensors:
            torch._foreach_copy_(tensors, self._copies)
        return dict(self.position)


class Interrupt:
    """SIGINT handling for the loop (main thread of a single process only: signal handlers cannot
    be set elsewhere, and ranks of a DDP run must not stop at different steps)."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled and threading.current_thread() is threading.main_thread()
        self.requested = False
        self._shield = 0
        self._previous = None

    def _handler(self, signum, frame) -> None:
        if self.requested and not self._shield:
            raise KeyboardInterrupt  # the second Ctrl-C: stop now (the engine rolls back)
        self.requested = True

    @contextlib.contextmanager
    def shielded(self) -> Iterator[None]:
        """Inside this block Ctrl-C only asks to stop; the block always completes."""
        self._shield += 1
        try:
            yield
        finally:
            self._shield -= 1

    def __enter__(self) -> Interrupt:
        if self.enabled:
            self._previous = signal.signal(signal.SIGINT, self._handler)
        return self

    def __exit__(self, *exc) -> bool:
        if self.enabled:
            signal.signal(signal.SIGINT, self._previous)
        return False


def check_writable(path: str | os.PathLike, what: str, *, folder: bool = False) -> str:
    """Make sure ``path`` (a file, or a folder with ``folder=True``) can be written; return it.

    Creates missing folders and writes (then removes) a probe file, so a read-only folder, a
    folder under a regular file, or a file where a folder must be (and the reverse) fail now
    with a ValueError naming ``what`` - not after the training compute.
    """
    path = os.fspath(path)
    target = path if folder else os.path.dirname(os.path.abspath(path))
    if folder and os.path.exists(path) and not os.path.isdir(path):
        raise ValueError(f"{what}={path!r} is an existing file, not a folder; choose another path")
    if not folder and os.path.isdir(path):
        raise ValueError(f"{what}={path!r} is a folder; give a file path "
                         f"(e.g. {os.path.join(path, 'run.pt')!r})")
    try:
        os.makedirs(target, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-test-", dir=target)
        os.close(fd)
        os.remove(probe)
    except OSError as err:
        blocker = _file_in_the_way(target)
        why = (f"{blocker!r} is a regular file, not a folder" if blocker
               else f"{type(err).__name__}: {err.strerror or err}")
        raise ValueError(f"{what}={path!r} cannot be written ({why}); choose a writable location"
                         ) from err
    return path


def _file_in_the_way(folder: str) -> str | None:
    """The first existing non-folder on the way to ``folder``, if any."""
    current = os.path.abspath(folder)
    parts = []
    while current and current != os.path.dirname(current):
        parts.append(current)
        current = os.path.dirname(current)
    for p in reversed(parts):
        if os.path.exists(p) and not os.path.isdir(p):
            return p
    return None
