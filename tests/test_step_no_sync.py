"""No host-device synchronisation inside a training step, for every registered method.

On a GPU, reading a tensor's value on the host (``.item()``, ``.tolist()``, ``bool(t)``, ``int(t)``,
``float(t)``, ``t.cpu()``, a Python ``if`` on a tensor), building a device tensor from host data
(``torch.tensor(3.0, device=...)``) or an op whose output shape depends on the data (``nonzero``,
boolean-mask indexing, ``unique``) makes the host wait for every queued kernel: the GPU idles every
step. On the CPU these cost nothing, so the test makes them *raise* while ``training_step``,
``backward`` and ``on_step_end`` run, which proves the GPU path never takes them.

Five value checks are allowed, each in a small function that reads values only for CPU tensors
(where the read is free) and skips accelerators - ``test_allowed_checks_skip_accelerators`` checks
that with meta tensors, on which any read raises.
"""
from __future__ import annotations

import sys

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import sslkit
from sslkit import methods

# (file, function) of the value checks that run on CPU tensors only.
ALLOWED = {("sslkit/pretext/_inputs.py", "check_unit_range"),
           ("sslkit/pretext/masking.py", "_check_ids_on_cpu"),
           ("sslkit/losses/reconstruction.py", "_check_targets_on_cpu"),
           ("sslkit/backbones/transformer.py", "_check"),
           ("sslkit/methods/word2vec.py", "check_ids")}

# aten ops that read a value back or size their output by the data: a sync on an accelerator.
SYNC_OPS = {"_local_scalar_dense", "nonzero", "nonzero_static", "masked_select", "unique", "_unique",
            "_unique2", "unique_consecutive", "unique_dim", "bincount", "histc"}


def _allowed() -> bool:
    f = sys._getframe(2)
    while f is not None:
        path = f.f_code.co_filename.replace("\\", "/")
        if any(path.endswith(file) and f.f_code.co_name == fn for file, fn in ALLOWED):
            return True
        f = f.f_back
    return False


def _raiser(what: str, original):
    def fail(*args, **kwargs):
        if _allowed():
            return original(*args, **kwargs)
        raise AssertionError(f"{what} inside the training step: a host-device sync on an accelerator")
    return fail


class _NoSyncOps(TorchDispatchMode):
    """Raises on the data-dependent aten ops (and boolean-mask indexing) outside ``ALLOWED``."""

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = func.overloadpacket.__name__
        bool_index = name in ("index", "index_put", "index_put_") and any(
            isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in args[1] if i is not None)
        # repeat_interleave with a tensor of repeats sizes its output by their sum (unless told)
        counted = (name == "repeat_interleave" and func._overloadname in ("Tensor", "self_Tensor")
                   and kwargs.get("output_size") is None)
        if (name in SYNC_OPS or bool_index or counted) and not _allowed():
            raise AssertionError(f"aten.{name} inside the training step: its output depends on the data "
                                 f"(a host-device sync on an accelerator)")
        return func(*args, **kwargs)


@pytest.fixture()
def no_sync(monkeypatch):
    """Make every host read of a tensor, and torch.tensor(), raise (outside ALLOWED)."""
    def arm():
        for name in ("item", "tolist", "__bool__", "__int__", "__float__", "__index__", "cpu", "numpy"):
            monkeypatch.setattr(torch.Tensor, name, _raiser(f"Tensor.{name}", getattr(torch.Tensor, name)))
        monkeypatch.setattr(torch, "tensor", _raiser("torch.tensor(data)", torch.tensor))
        return _NoSyncOps()
    return arm


def _batch(name: str, data: dict) -> tuple[methods.Method, torch.Tensor]:
    torch.manual_seed(0)
    # the data kind the method trains on; images are 3-channel shapes, so every colour op really runs;
    # wav2vec's frames are 80 samples: it gets speech (the waves are too short for its encoder)
    ds = data["speech"] if name == "wav2vec" else data[
        {"text": "corpus", "signal": "waves", "clip": "moving_digits", "image": "shapes"}[
            methods.registry.kinds(name)[0]]]
    small = {"dino": dict(out_dim=64, hidden_dim=32, bottleneck_dim=16, n_local=2),
             "moco": dict(queue_size=64), "swav": dict(queue_length=32, queue_start=1)}.get(name, {})
    m = sslkit.create(name, data=ds, **small)
    idx = torch.arange(16)
    return m, ds.batch(idx)


@pytest.fixture(scope="module")
def data() -> dict:
    shapes = sslkit.data.load("shapes")
    return {"shapes": shapes.subset(torch.arange(64)), "corpus": sslkit.data.load("corpus"),
            "waves": sslkit.data.load("waves"), "moving_digits": sslkit.data.load("moving_digits"),
            "speech": sslkit.data.load("spoken_digits").subset(torch.arange(32))}


@pytest.mark.parametrize("name", methods.names())
def test_training_step_makes_no_host_sync(name, data, no_sync):
    m, x = _batch(name, data)
    m.train()
    # One step first: caches built once per run (lookup tables, EMA tensor lists) may read values.
    m.training_step(x)["loss"].backward()
    m.on_step_end(1, 10)
    mode = no_sync()
    with mode:
        for step in (2, 3):
            m.zero_grad(set_to_none=True)
            out = m.training_step(x)
            out["loss"].backward()
            m.on_step_end(step, 10)
    assert all(torch.is_tensor(v) for v in out.values())   # logged terms stay on the device


def test_the_guard_catches_syncs(no_sync):
    """The patches really raise: each of these would stall a GPU."""
    x = torch.rand(4, 3)
    mode = no_sync()
    with mode:
        for bad in (lambda: x.sum().item(), lambda: bool(x.sum() > 0), lambda: float(x.sum()),
                    lambda: x.tolist(), lambda: x[x > 0.5], lambda: x.nonzero(),
                    lambda: torch.tensor(1.0), lambda: [1, 2][x.argmax().long()]):
            with pytest.raises(AssertionError, match="host-device sync"):
                bad()


def test_allowed_checks_skip_accelerators():
    """The allowed checks read no value when the tensor is not on the CPU (meta: any read raises)."""
    from sslkit.losses.reconstruction import _check_targets_on_cpu
    from sslkit.pretext._inputs import check_unit_range
    from sslkit.pretext.masking import _check_ids_on_cpu
    check_unit_range("x", torch.empty(2, 3, 4, 4, device="meta"))
    _check_ids_on_cpu(torch.empty(2, 5, dtype=torch.long, device="meta"), 10)
    _check_targets_on_cpu(torch.empty(2, 5, dtype=torch.long, device="meta"),
                          torch.empty(2, 5, device="meta"), 10)
    sslkit.backbones.create("transformer", vocab_size=10, max_len=8)._check(
        torch.empty(2, 5, dtype=torch.long, device="meta"))
    from sslkit.methods.word2vec import WordVectors
    WordVectors(10, 4).check_ids(torch.empty(2, 5, dtype=torch.long, device="meta"))
    with pytest.raises(ValueError, match="255"):                   # ...and do check CPU tensors
        check_unit_range("x", torch.full((2, 3, 4, 4), 200.0))
