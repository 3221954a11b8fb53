"""The CPU side of a training run: freed activation memory is kept for the next step.

A training step allocates and frees the same large activation buffers every step. glibc's malloc
serves a block above its mmap threshold (which adapts up to 32 MiB) with a fresh ``mmap`` and gives
it back to the kernel when it is freed, so every step page-faults its activations in again, each
page zeroed by the kernel. For SimCLR's ConvNet on 32 px images at batch 256 (512 views: 64 MiB per
activation) that was a third of the step's CPU time, spent in the kernel - and the reason one
forward over both views looked slower than two forwards of one view each (issue 17;
``benchmarks/RESULTS.md``). :func:`heap_kept` raises the mmap and trim thresholds for the length of
a run, so freed blocks stay in the heap and the next step reuses them; afterwards it sets the
values glibc's adaptive rule reaches after large frees (32 MiB, trim 64 MiB) and returns the free
memory to the system (``malloc_trim``).

Only on glibc (Linux), and only when the user did not tune malloc (``MALLOC_*`` / ``GLIBC_TUNABLES``
in the environment); elsewhere it does nothing. Results do not change: only where memory comes from.
"""
from __future__ import annotations

import contextlib
import ctypes
import os
import platform
from collections.abc import Iterator

import torch

# mallopt parameters (glibc's malloc.h).
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
# During a run: blocks up to 1 GiB come from (and go back to) the heap, and up to 1 GiB of free heap
# is kept. 1 GiB is above any activation of the kit's CPU-sized runs (64 MiB at SimCLR's batch 256).
RUN_THRESHOLD = 1 << 30
# After a run: where glibc's adaptive rule ends up after freeing large blocks (mmap threshold at its
# 32 MiB ceiling, trim threshold twice that).
AFTER_MMAP, AFTER_TRIM = 32 << 20, 64 << 20

# Environment variables by which a user tunes these thresholds themselves.
USER_SETTINGS = ("GLIBC_TUNABLES", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_",
                 "MALLOC_MMAP_MAX_")

_depth = 0   # nested runs (fit inside a callback of fit): only the outermost restores


def _libc() -> ctypes.CDLL | None:
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    if any(k in os.environ for k in USER_SETTINGS):
        return None   # the user chose malloc settings: leave them
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return None
    return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None


@contextlib.contextmanager
def heap_kept(device: torch.device) -> Iterator[bool]:
    """Keep freed memory in the heap while a CPU run lasts; yields whether it did."""
    global _depth
    libc = _libc() if device.type == "cpu" else None
    if libc is None:
        yield False
        return
    _depth += 1
    if _depth == 1:
        libc.mallopt(M_MMAP_THRESHOLD, RUN_THRESHOLD)
        libc.mallopt(M_TRIM_THRESHOLD, RUN_THRESHOLD)
    try:
        yield True
    finally:
        _depth -= 1
        if _depth == 0:
            libc.mallopt(M_MMAP_THRESHOLD, AFTER_MMAP)
            libc.mallopt(M_TRIM_THRESHOLD, AFTER_TRIM)
            libc.malloc_trim(0)
