"""Checkpoints: atomic writes, safe loading, clear errors, and exact resume."""
from __future__ import annotations

import os

import pytest
import torch
from torch import nn

import sslkit
from sslkit.data import Dataset
from sslkit.methods import Method
from sslkit.train import (
    CheckpointError, History, WarmupCosine, fit, load_checkpoint, load_method, save_checkpoint)

from interrupts import RaiseAt  # a Ctrl-C (or another exception) after a step


class TinyAE(Method):
    """Denoising linear autoencoder; the noise comes from the global RNG (tests RNG restore)."""

    name = "tiny_ae"

    def __init__(self, code: int = 4) -> None:
        torch.manual_seed(5)
        enc = nn.Sequential(nn.Flatten(), nn.Linear(16, code))
        enc.embed_dim = code
        enc.forward_features = enc.forward
        super().__init__(enc)
        self.dec = nn.Linear(code, 16)
        self.register_buffer("calls", torch.zeros((), dtype=torch.long))  # state in on_step_end

    def training_step(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        flat = x.flatten(1)                                      # (B, 16)
        noisy = flat + 0.05 * torch.randn_like(flat)
        return {"loss": (self.dec(self.backbone(noisy)) - flat).pow(2).mean()}

    def on_step_end(self, step: int, total_steps: int) -> None:
        self.calls += step


def dataset(n: int = 48) -> Dataset:
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (n, 1, 4, 4), dtype=torch.uint8, generator=g)
    return Dataset(name="random", split="train", kind="image", x=x,
                   labels=torch.zeros(n, dtype=torch.long), classes=["a"])


def run(method, **kw):
    # 48 / 16 = 3 steps per epoch: runs below cross epoch boundaries
    kw = {"batch_size": 16, "device": "cpu", "progress": False, "monitor_collapse": False, "lr": 1e-2,
          "seed": 3, **kw}
    return fit(method, dataset(), **kw)


def assert_same_weights(a: nn.Module, b: nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


@pytest.mark.parametrize("stop_at", [5, 6])  # mid-epoch and exactly at an epoch boundary
def test_interrupted_then_resumed_equals_uninterrupted(tmp_path, stop_at):
    full = TinyAE()
    h_full = run(full, steps=10)

    path = tmp_path / "run.pt"
    part = TinyAE()
    h1 = run(part, steps=10, checkpoint=path, callbacks=[RaiseAt(stop_at)])
    assert h1.interrupted and len(h1) == stop_at
    torch.manual_seed(123)  # whatever happens in between must not matter
    resumed = TinyAE(code=4)
    h2 = run(resumed, steps=10, resume=path, seed=99)  # the seed is taken from the checkpoint
    assert_same_weights(resumed, full)
    assert h2.loss == h_full.loss and h2.lr == h_full.lr and h2.step == h_full.step
    assert not h2.interrupted


def test_crash_resumes_from_the_last_periodic_checkpoint(tmp_path):
    full = TinyAE()
    run(full, epochs=4)
    path = tmp_path / "run.pt"
    with pytest.raises(RuntimeError):
        run(TinyAE(), epochs=4, checkpoint=path, checkpoint_every=4, callbacks=[RaiseAt(7, RuntimeError)])
    assert load_checkpoint(path)["loop"]["step"] == 4
    resumed = TinyAE()
    h = run(resumed, epochs=4, resume=path)
    assert_same_weights(resumed, full) and len(h) == 12


def test_checkpoint_contents_load_with_weights_only(tmp_path):
    path = tmp_path / "sub" / "c.pt"
    m = TinyAE()
    run(m, steps=4, checkpoint=path)
    ckpt = torch.load(path, weights_only=True)  # plain tensors and python only
    assert ckpt["format"] == "sslkit-checkpoint" and ckpt["loop"] == {"step": 4, "epoch": 1, "batch": 1}
    assert set(ckpt["rng"]) == {"torch", "cuda", "data"}
    assert ckpt["config"]["method"] == "tiny_ae" and ckpt["config"]["fit"]["batch_size"] == 16
    assert History.from_dict(ckpt["history"]).step == [1, 2, 3, 4]
    assert torch.equal(ckpt["model"]["dec.weight"], m.dec.weight)
    assert [f for f in os.listdir(path.parent) if f != "c.pt"] == []  # no temp files left


def test_save_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "c.pt"
    m = TinyAE()
    args = (m, None, WarmupCosine(0.1), History(), {"method": "tiny_ae"}, {"torch": torch.get_rng_state()})
    save_checkpoint(path, *args)
    before = path.read_bytes()

    def broken_save(obj, f):
        f.write(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, *args)
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["c.pt"]


@pytest.fixture
def good(tmp_path):
    path = tmp_path / "good.pt"
    run(TinyAE(), steps=2, checkpoint=path)
    return path


@pytest.mark.parametrize("corrupt, match", [
    (lambda p: p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2]), "cannot be read"),
    (lambda p: p.write_bytes(b"\x00garbage" * 100), "cannot be read"),
    (lambda p: p.write_bytes(b""), "empty"),
    (lambda p: torch.save({"w": torch.zeros(2)}, p), "not an sslkit checkpoint"),
    (lambda p: torch.save(torch.zeros(2), p), "holds a Tensor"),
    (lambda p: torch.save({"x": nn.Linear(2, 2)}, p), "cannot be read"),  # not weights_only-safe
    (lambda p: p.unlink(), "does not exist"),
])
def test_bad_files_raise_checkpoint_error_naming_the_file(good, corrupt, match):
    corrupt(good)
    with pytest.raises(CheckpointError, match=match) as err:
        load_checkpoint(good)
    assert str(good) in str(err.value)
    assert isinstance(err.value, ValueError)


def test_mismatched_model_is_rejected_before_anything_is_loaded(good):
    other = TinyAE(code=6)
    before = {k: v.clone() for k, v in other.state_dict().items()}
    with pytest.raises(CheckpointError, match="other shapes"):
        run(other, steps=4, resume=good)
    for k, v in other.state_dict().items():
        assert torch.equal(v, before[k])

    class Other(TinyAE):
        name = "other"

    with pytest.raises(CheckpointError, match="'tiny_ae' run"):
        run(Other(), steps=4, resume=good)
    with pytest.raises(ValueError, match="batch_size=8 but checkpoint"):
        run(TinyAE(), steps=4, resume=good, batch_size=8)
    with pytest.raises(ValueError, match="not both"):
        run(TinyAE(), steps=4, resume=good, history=History())


def test_load_method_rebuilds_a_registered_method(tmp_path):
    if "simclr" not in sslkit.method_names():
        pytest.skip("simclr not written yet")
    data = sslkit.data.load("digits")
    method = sslkit.create("simclr", data=data, temperature=0.2)
    path = tmp_path / "simclr.pt"
    fit(method, data, steps=2, batch_size=32, device="cpu", progress=False, monitor_collapse=False,
        checkpoint=path)
    loaded = load_method(path)
    assert type(loaded) is type(method) and loaded.config.temperature == 0.2
    assert not loaded.training
    assert_same_weights(loaded, method)
    x = data.batch(torch.arange(8))
    method.eval()
    torch.testing.assert_close(loaded.embed(x), method.embed(x), rtol=0, atol=0)
    # data loaded by name must have the shape the model was trained on
    ckpt = torch.load(path, weights_only=True)
    ckpt["config"]["data"]["sample_shape"] = [1, 16, 16]
    torch.save(ckpt, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match=r"shape \(1, 16, 16\).*pass data="):
        load_method(tmp_path / "other.pt")
    assert type(load_method(tmp_path / "other.pt", data=data)) is type(method)
