"""The training step for fast GPU runs (issue 10), checked on the CPU: no host-device sync between
read points, fp16 loss scaling, the compile fallback, AdamW betas from the method, the run config."""
from __future__ import annotations

import contextlib
import importlib
import json
import math

import pytest
import torch
from torch import nn

import sslkit
from sslkit.data import Dataset
from sslkit.methods import Method
from sslkit.train import Callback, fit, load_checkpoint
from sslkit.train.run import Run
from sslkit.train.step import LossScale, TrainStep

fit_module = importlib.import_module("sslkit.train.fit")


class TinyAE(Method):
    name = "tiny_ae"

    def __init__(self) -> None:
        torch.manual_seed(5)
        enc = nn.Sequential(nn.Flatten(), nn.Linear(16, 4))
        enc.embed_dim = 4
        enc.forward_features = enc.forward
        super().__init__(enc)
        self.dec = nn.Linear(4, 16)

    def training_step(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        flat = x.flatten(1)                                      # (B, 16)
        noisy = flat + 0.05 * torch.randn_like(flat)
        rec = self.dec(self.backbone(noisy))
        return {"loss": (rec - flat).pow(2).mean(), "noise": (noisy - flat).abs().mean()}


def dataset(n: int = 64) -> Dataset:
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (n, 1, 4, 4), dtype=torch.uint8, generator=g)
    return Dataset(name="random", split="train", kind="image", x=x, labels=torch.zeros(n, dtype=torch.long),
                   classes=["a"])


def run(method=None, **kw):
    kw = {"batch_size": 16, "device": "cpu", "progress": False, "monitor_collapse": False, **kw}
    return fit(method or TinyAE(), kw.pop("data", None) or dataset(), **kw)


# -- no host-device sync in the loop body -------------------------------------------------------------
SYNCS = ("item", "tolist", "__bool__", "__float__")


@contextlib.contextmanager
def syncs_forbidden_between_reads(monkeypatch):
    """Tensor reads that make the host wait for the device raise while training steps run; they
    are allowed inside ``Run.read`` (the read points) and outside the loop (set-up, the end).
    The optimiser is the fused one the GPU path uses."""
    state = {"armed": False, "reading": False, "caught": []}
    for name in SYNCS:
        original = getattr(torch.Tensor, name)

        def guarded(self, *args, _name=name, _original=original, **kwargs):
            if state["armed"] and not state["reading"]:
                state["caught"].append(_name)
                raise AssertionError(f"host-device sync in the training loop: Tensor.{_name}")
            return _original(self, *args, **kwargs)
        monkeypatch.setattr(torch.Tensor, name, guarded)
    read = Run.read

    def reading(self):
        state["reading"] = True
        try:
            return read(self)
        finally:
            state["reading"] = False
    monkeypatch.setattr(Run, "read", reading)
    monkeypatch.setattr(fit_module, "use_fused", lambda device, precision: True)

    class Arm(Callback):
        def on_train_start(self, st):
            state["armed"] = True

        def on_train_end(self, st):
            state["armed"] = False
    yield Arm(), state


def test_no_host_sync_between_read_points(monkeypatch, tmp_path):
    with syncs_forbidden_between_reads(monkeypatch) as (arm, state):
        h = run(steps=14, log_every=5, checkpoint=tmp_path / "c.pt", checkpoint_every=7, callbacks=[arm])
        assert h.step == list(range(1, 15)) and state["caught"] == []
        assert all(math.isfinite(v) for v in h.loss) and len(h.terms["noise"]) == 14
        assert load_checkpoint(tmp_path / "c.pt")["loop"]["step"] == 14

        ds = sslkit.data.load("digits")  # a real method with a views callable that is sync-free
        m = sslkit.create("simclr", data=ds, views=lambda x, generator=None: x.flip(-1))
        h = run(m, data=ds, steps=6, batch_size=32, log_every=3, callbacks=[arm])
        assert len(h) == 6 and state["caught"] == []

        class Syncs(TinyAE):  # the probe is live: a method that reads a value back is caught
            def training_step(self, x):
                out = super().training_step(x)
                return {**out, "flag": torch.zeros(()) + float(out["loss"] > 0)}
        with pytest.raises(AssertionError, match="host-device sync"):
            run(Syncs(), steps=3, log_every=5, callbacks=[arm])
        assert state["caught"]


def test_defaults_read_every_step_on_the_cpu_and_reads_fill_the_history():
    seen = []

    class Spy(Callback):
        def on_step_end(self, state):
            seen.append(len(state.history))

    run(steps=6, callbacks=[Spy()])
    assert seen == [1, 2, 3, 4, 5, 6]
    seen.clear()
    h = run(steps=6, log_every=4, callbacks=[Spy()])
    assert seen == [0, 0, 0, 4, 4, 4] and h.step == [1, 2, 3, 4, 5, 6]  # the end reads the rest
    assert h.throughput[0] == h.throughput[3] and h.time == sorted(h.time)   # per-window figures


def test_reading_every_n_steps_trains_exactly_like_reading_every_step():
    a, b = TinyAE(), TinyAE()
    ha, hb = run(a, steps=9, lr=1e-2), run(b, steps=9, lr=1e-2, log_every=4)
    assert ha.loss == hb.loss and ha.terms == hb.terms
    assert all(torch.equal(a.state_dict()[k], v) for k, v in b.state_dict().items())


# -- the guarded update --------------------------------------------------------------------------------
@pytest.mark.parametrize("optimizer", ["adamw", "sgd"])
def test_fused_update_is_skipped_on_the_device_when_not_finite(optimizer):
    lin = nn.Linear(3, 2)
    opt = (torch.optim.AdamW if optimizer == "adamw" else torch.optim.SGD)(
        lin.parameters(), lr=0.1, fused=True, **({} if optimizer == "adamw" else {"momentum": 0.9}))

    class M(Method):
        def training_step(self, x):
            return {"loss": self.backbone(x).sum() * x.mean()}

    m = M(lin)
    step = TrainStep(m, m, opt, torch.device("cpu"))
    out, bad = step(torch.ones(4, 3), lr=0.1)
    assert float(bad) == 0
    before = [p.clone() for p in lin.parameters()]
    state = {k: v.clone() for k, v in opt.state[lin.weight].items()}
    out, bad = step(torch.full((4, 3), math.nan), lr=0.1)
    assert float(bad) == 1
    assert all(torch.equal(p, q) for p, q in zip(lin.parameters(), before))
    assert all(torch.equal(opt.state[lin.weight][k], v) for k, v in state.items())
    out, bad = step(torch.ones(4, 3), lr=0.1)          # still skipped: the window is bad
    assert all(torch.equal(p, q) for p, q in zip(lin.parameters(), before))
    step.new_window()
    step(torch.ones(4, 3), lr=0.1)
    assert not torch.equal(lin.weight, before[0])


def test_loss_scale_backs_off_on_overflow_and_grows_after_clean_steps():
    scale = LossScale(torch.device("cpu"), dynamic=True)
    g = [torch.tensor([1.0, math.inf])]
    diverged, skip = scale.check(torch.tensor(2.0), g)
    assert (float(diverged), float(skip), float(scale.scale)) == (0.0, 1.0, 2.0 ** 15)
    g = [torch.tensor([2.0 ** 15, 2.0 ** 16])]           # scaled gradients: unscaled in place
    diverged, skip = scale.check(torch.tensor(2.0), g)
    assert float(skip) == 0 and g[0].tolist() == [1.0, 2.0]
    diverged, skip = scale.check(torch.tensor(math.nan), [torch.ones(2)])
    assert float(diverged) == 1                          # a non-finite loss is divergence
    plain = LossScale(torch.device("cpu"), dynamic=False)
    diverged, skip = plain.check(torch.tensor(1.0), [torch.tensor([0.5, -math.inf])])
    assert float(diverged) == float(skip) == 1 and float(plain.scale) == 1


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_mixed_precision_trains_on_the_cpu(precision):
    h = run(steps=60, lr=2e-2, precision=precision)
    assert sum(h.loss[-5:]) < 0.8 * sum(h.loss[:5]) and not h.skipped


# -- compile, optimiser settings, run config ------------------------------------------------------------
def test_compile_failure_falls_back_to_eager_with_a_warning(monkeypatch):
    def broken_compile(model, **kwargs):
        def compiled(x):
            raise RuntimeError("Cannot find a working triton installation")
        return compiled

    monkeypatch.setattr(torch, "compile", broken_compile)
    with pytest.warns(RuntimeWarning, match="torch.compile failed .*triton.*eager"):
        h = run(TinyAE(), steps=5, lr=1e-2, compile=True)
    assert h.loss == run(TinyAE(), steps=5, lr=1e-2).loss   # the same run as without compile


def test_adamw_betas_come_from_the_method():
    class Betas(TinyAE):
        adam_betas = (0.9, 0.95)

    seen = {}

    class Grab(Callback):
        def on_train_start(self, state):
            seen["betas"] = [g["betas"] for g in state.optimizer.param_groups]

    run(Betas(), steps=1, callbacks=[Grab()])
    assert seen["betas"] == [(0.9, 0.95)] * 2
    run(TinyAE(), steps=1, callbacks=[Grab()])
    assert seen["betas"] == [(0.9, 0.999)] * 2


def test_run_config_records_the_view_recipe_and_the_settings(tmp_path):
    from sslkit.pretext import ViewRecipe

    class WithRecipe(TinyAE):
        view_recipe = ViewRecipe(blur_p=0.0)

    run(WithRecipe(), steps=1, checkpoint=tmp_path / "c.pt")
    cfg = load_checkpoint(tmp_path / "c.pt")["config"]
    assert cfg["view_recipe"] == json.loads(json.dumps(ViewRecipe(blur_p=0.0).to_dict()))
    assert {k: cfg["fit"][k] for k in ("on_nan", "log_every", "precision", "compile")} == {
        "on_nan": "stop", "log_every": 1, "precision": "fp32", "compile": False}
    assert cfg["data"]["samples"] == 64


@pytest.mark.parametrize("kw, match", [
    ({"on_nan": "ignore"}, "on_nan='ignore' is not allowed"),
    ({"log_every": 0}, "log_every"),
    ({"on_nan": "skip", "log_every": 5}, "on_nan='skip' checks every step"),
    ({"precision": "fp8"}, "precision='fp8'"),
    ({"compile": "yes"}, "compile='yes'"),
    ({"minutes": math.inf}, "minutes=inf must be a finite number"),
    ({"lr": math.inf}, "lr=inf must be a finite number"),
])
def test_bad_step_arguments(kw, match):
    with pytest.raises(ValueError, match=match):
        run(**{"steps": 2, **kw})


@pytest.mark.cuda
def test_cuda_step_is_fused_channels_last_compiled_and_restores_cudnn_benchmark():
    seen = {}

    class Grab(Callback):
        def on_train_start(self, state):
            seen["fused"] = state.optimizer.defaults.get("fused")
            seen["benchmark"] = torch.backends.cudnn.benchmark

    before = torch.backends.cudnn.benchmark
    ds = sslkit.data.load("shapes", n=256)
    m = sslkit.create("simclr", data=ds)
    h = fit(m, ds, steps=30, batch_size=64, device="cuda", progress=False, callbacks=[Grab()])
    assert seen == {"fused": True, "benchmark": True} and torch.backends.cudnn.benchmark == before
    assert len(h) == 30 and all(math.isfinite(v) for v in h.loss)
    conv = next(p for p in m.parameters() if p.ndim == 4)
    assert conv.is_contiguous(memory_format=torch.channels_last)
