"""The CPU side of fit (issue 17): freed activation memory is reused instead of page-faulted in again
every step, channels-last for convolutional networks, fused optimiser kernels."""
from __future__ import annotations

import platform
import resource

import pytest
import torch
from torch import nn

import sslkit
from sslkit.data import Dataset
from sslkit.methods import Method
from sslkit.train import Callback, fit
from sslkit.train import host
from sslkit.train.step import memory_format

BIG = 16 << 20   # floats: a 64 MiB activation, above glibc's largest adaptive mmap threshold (32 MiB)


class BigActivation(Method):
    """One parameter; every step allocates, fills and frees a 64 MiB buffer, like a conv layer's
    activation at SimCLR's batch size."""

    name = "big"

    def __init__(self) -> None:
        enc = nn.Flatten()
        enc.embed_dim = 16
        enc.forward_features = enc.forward
        super().__init__(enc)
        self.w = nn.Parameter(torch.ones(()))

    def training_step(self, x):
        buf = torch.empty(BIG).fill_(1.0)   # every page written
        return {"loss": self.w * buf[-1] * x.mean()}


class PageFaults(Callback):
    def __init__(self) -> None:
        self.counts = []

    def on_step_end(self, state):
        self.counts.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt)


def dataset(n: int = 32) -> Dataset:
    x = torch.randint(0, 256, (n, 1, 4, 4), dtype=torch.uint8)
    return Dataset(name="random", split="train", kind="image", x=x, labels=torch.zeros(n, dtype=torch.long),
                   classes=["a"])


glibc = pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
                           reason="glibc's malloc only")


@glibc
def test_a_cpu_run_reuses_freed_activation_memory(monkeypatch):
    for var in host.USER_SETTINGS:
        monkeypatch.delenv(var, raising=False)
    probe = PageFaults()
    fit(BigActivation(), dataset(), steps=10, batch_size=8, device="cpu", progress=False,
        monitor_collapse=False, callbacks=[probe])
    per_step = [b - a for a, b in zip(probe.counts[2:], probe.counts[3:])]   # steps 4..10
    pages = BIG * 4 // resource.getpagesize()
    # Without the heap kept, every step faults the buffer's 16,384 pages in again (each zeroed by the
    # kernel). With it, the freed block is reused; now and then the heap grows once more (another
    # allocation took part of the freed block), so a step or two may still fault it in.
    faulted = sum(n > pages // 2 for n in per_step)
    assert faulted <= 2, (per_step, pages)


@glibc
def test_the_allocator_is_tuned_for_the_run_only_and_never_against_the_users_settings(monkeypatch):
    calls = []

    class FakeLibc:
        def mallopt(self, param, value):
            calls.append(("mallopt", param, value))
            return 1

        def malloc_trim(self, pad):
            calls.append(("trim", pad))
            return 1

    for var in host.USER_SETTINGS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(host.ctypes, "CDLL", lambda name: FakeLibc())
    with host.heap_kept(torch.device("cpu")) as kept:
        assert kept and calls == [("mallopt", host.M_MMAP_THRESHOLD, host.RUN_THRESHOLD),
                                  ("mallopt", host.M_TRIM_THRESHOLD, host.RUN_THRESHOLD)]
        with host.heap_kept(torch.device("cpu")):   # nested: the outer run restores
            pass
        assert len(calls) == 2
    assert calls[2:] == [("mallopt", host.M_MMAP_THRESHOLD, host.AFTER_MMAP),
                         ("mallopt", host.M_TRIM_THRESHOLD, host.AFTER_TRIM), ("trim", 0)]
    calls.clear()
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "131072")
    with host.heap_kept(torch.device("cpu")) as kept:
        assert not kept
    with host.heap_kept(torch.device("meta")) as kept:   # not a CPU run
        assert not kept
    assert calls == []


def test_channels_last_for_convolutional_networks_on_the_cpu():
    data = sslkit.data.load("digits").subset(torch.arange(64))
    cpu = torch.device("cpu")
    conv = sslkit.create("simclr", data=data)
    assert memory_format(conv, data, cpu) is torch.channels_last
    vit = sslkit.create("simclr", data=data, backbone="vit_tiny")   # one conv: the patch embedding
    assert memory_format(vit, data, cpu) is torch.contiguous_format
    seen = []

    class Layout(Callback):
        def on_step_end(self, state):
            w = state.method.backbone.features[1][0].weight   # (32, 32, 3, 3)
            seen.append(w.is_contiguous(memory_format=torch.channels_last) and not w.is_contiguous())

    opt = []

    class Opt(Callback):
        def on_train_start(self, state):
            opt.append(state.optimizer.defaults.get("fused"))

    fit(conv, data, steps=2, batch_size=32, device="cpu", progress=False, monitor_collapse=False,
        callbacks=[Layout(), Opt()])
    assert seen == [True, True] and opt == [True]
    w = conv.backbone.features[1][0].weight   # handed back in the default layout after the run
    assert w.is_contiguous() and not w.is_contiguous(memory_format=torch.channels_last)
