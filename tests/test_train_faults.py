"""Nothing lost when training breaks (issue 14): faults injected into real training runs.

Each fault - a NaN at a chosen step, an unwritable output, a second Ctrl-C inside ``on_step_end``,
a disk-full write - must leave the last good checkpoint loadable and consistent, and the History
and the model in memory describing one and the same step.
"""
from __future__ import annotations

import errno
import importlib
import math
import os
import shutil
import signal
import warnings

import pytest
import torch
from torch import nn

import sslkit
from sslkit.data import Dataset
from sslkit.methods import Method
from sslkit.train import (Callback, CheckpointWarning, History, LivePlot, fit, load_checkpoint)

fit_module = importlib.import_module("sslkit.train.fit")


class NanGrad(torch.autograd.Function):
    """Identity forward, NaN gradient: a finite loss whose gradients are not."""

    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        return grad * math.nan


class Faulty(Method):
    """Denoising linear autoencoder with an EMA-like buffer updated in ``on_step_end``; can make a
    chosen step's loss (or only its gradients) NaN, or raise inside ``on_step_end``."""

    name = "faulty"

    def __init__(self, nan_loss=(), nan_grad=(), on_step_end_hook=None) -> None:
        torch.manual_seed(5)
        enc = nn.Sequential(nn.Flatten(), nn.Linear(16, 4))
        enc.embed_dim = 4
        enc.forward_features = enc.forward
        super().__init__(enc)
        self.dec = nn.Linear(4, 16)
        self.register_buffer("calls", torch.zeros((), dtype=torch.long))   # sum of steps seen
        self.register_buffer("ema", torch.zeros(4, 16))                    # follows dec.weight.T
        self.nan_loss, self.nan_grad, self.hook = set(nan_loss), set(nan_grad), on_step_end_hook
        self.steps = 0

    def training_step(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        self.steps += 1
        flat = x.flatten(1)                                                  # (B, 16)
        noisy = flat + 0.05 * torch.randn_like(flat)
        loss = (self.dec(self.backbone(noisy)) - flat).pow(2).mean()
        if self.steps in self.nan_loss:
            loss = loss * math.nan
        if self.steps in self.nan_grad:
            loss = NanGrad.apply(loss)
        return {"loss": loss}

    def on_step_end(self, step: int, total_steps: int) -> None:
        self.calls += step
        self.ema.lerp_(self.dec.weight.detach().T, 0.5)
        if self.hook is not None:
            self.hook(step)


def dataset(n: int = 48, name: str = "random", kind: str = "image") -> Dataset:
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (n, 1, 4, 4), dtype=torch.uint8, generator=g)
    return Dataset(name=name, split="train", kind=kind, x=x, labels=torch.zeros(n, dtype=torch.long),
                   classes=["a"])


def run(method, **kw):
    kw = {"batch_size": 16, "device": "cpu", "progress": False, "monitor_collapse": False, "lr": 1e-2,
          "seed": 3, **kw}
    return fit(method, kw.pop("data", None) or dataset(), **kw)


class StopAt(Callback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, state) -> None:
        state.stop = state.step == self.step


def reference(stop: int, steps: int = 10, **kw) -> tuple[Faulty, History]:
    """The same run of ``steps`` steps (same schedule), stopped cleanly after step ``stop``."""
    m = Faulty()
    return m, run(m, steps=steps, callbacks=[StopAt(stop)], **kw)


def same_state(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def assert_consistent(path, method: nn.Module, history: History, step: int) -> None:
    """The checkpoint, the live model and the History all describe step ``step``."""
    ckpt = load_checkpoint(path)
    assert ckpt["loop"]["step"] == step and history.step[-1:] == ([step] if step else [])
    assert History.from_dict(ckpt["history"]).step == history.step
    assert same_state(ckpt["model"], method.state_dict())
    assert all(torch.isfinite(v.float()).all() for v in ckpt["model"].values())
    assert int(ckpt["model"]["calls"]) == step * (step + 1) // 2  # on_step_end ran exactly 1..step


# -- 1. a NaN at a chosen step ---------------------------------------------------------------------
@pytest.mark.parametrize("fault", ["nan_loss", "nan_grad"])
def test_nan_step_leaves_weights_optimiser_and_last_checkpoint_untouched(tmp_path, fault):
    path = tmp_path / "run.pt"
    m = Faulty(**{fault: [5]})
    with pytest.warns(RuntimeWarning, match="step 5: .* the run diverged.*those of step 4") as rec:
        h = run(m, steps=10, checkpoint=path, checkpoint_every=2)
    msg = str(rec[0].message)
    assert ("the loss was nan" in msg) == (fault == "nan_loss") and str(path) in msg
    ref, h_ref = reference(4)
    assert same_state(m.state_dict(), ref.state_dict())          # weights, EMA buffer, counter
    assert h.loss == h_ref.loss and h.step == [1, 2, 3, 4] and not h.interrupted
    assert_consistent(path, m, h, 4)
    ckpt = load_checkpoint(path)
    resumed = Faulty()
    run(resumed, steps=10, resume=path, callbacks=[StopAt(6)])   # the optimiser state is usable
    full, _ = reference(6)
    assert same_state(resumed.state_dict(), full.state_dict())


def test_nan_within_a_read_window_rolls_back_to_the_last_read(tmp_path):
    """The GPU path (fused optimiser, reads every 4 steps): the update of the NaN step and of every
    later step of the window is skipped on the device, then training rolls back to the last read."""
    finite = []

    class Watch(Callback):
        def on_step_end(self, state):
            finite.append(all(torch.isfinite(p).all() for p in state.method.parameters()))

    path = tmp_path / "run.pt"
    m = Faulty(nan_loss=[6])
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(fit_module, "use_fused", lambda device, precision: True)
        with pytest.warns(RuntimeWarning, match="step 6: the loss was nan.*those of step 4.*every 4"):
            h = run(m, steps=12, log_every=4, checkpoint=path, callbacks=[Watch()])
        ref, h_ref = reference(4, steps=12, log_every=4)
    assert all(finite) and len(finite) == 7       # finite through steps 5-7 (step 8 reads: stop)
    assert same_state(m.state_dict(), ref.state_dict()) and h.loss == h_ref.loss
    assert_consistent(path, m, h, 4)


def test_on_nan_skip_undoes_the_step_and_goes_on(tmp_path):
    m = Faulty(nan_loss=[3], nan_grad=[6])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        h = run(m, steps=8, on_nan="skip", checkpoint=tmp_path / "run.pt")
    assert h.skipped == [3, 6] and h.step == [1, 2, 4, 5, 7, 8]
    assert all(math.isfinite(v) for v in h.loss)
    assert int(m.calls) == sum(h.step)            # on_step_end's effects of 3 and 6 were undone
    assert load_checkpoint(tmp_path / "run.pt")["loop"]["step"] == 8
    with pytest.warns(RuntimeWarning, match=r"step 12: the loss was nan \(10 steps in a row\)"):
        h = run(Faulty(nan_loss=range(3, 50)), steps=20, on_nan="skip")
    assert h.skipped == list(range(3, 12)) and h.step == [1, 2]


# -- 2. an unwritable output -------------------------------------------------------------------------
@pytest.mark.parametrize("where", ["under_a_file", "a_folder", "plot_under_a_file", "read_only"])
def test_unwritable_outputs_fail_before_the_first_step(tmp_path, monkeypatch, where):
    (tmp_path / "file").write_text("x")
    (tmp_path / "folder").mkdir()
    kw = {"under_a_file": {"checkpoint": tmp_path / "file" / "run.pt"},
          "a_folder": {"checkpoint": tmp_path / "folder"},
          "plot_under_a_file": {"callbacks": [LivePlot(path=str(tmp_path / "file" / "loss.png"))]},
          "read_only": {"checkpoint": tmp_path / "ro" / "run.pt"}}[where]
    if where == "read_only":  # tests run as root, where chmod does not stop writes: patch the OS
        import tempfile

        def denied(*args, **kwargs):
            raise PermissionError(errno.EACCES, "Permission denied")
        monkeypatch.setattr(tempfile, "mkstemp", denied)
    m = Faulty()
    before = {k: v.clone() for k, v in m.state_dict().items()}
    with pytest.raises(ValueError, match="cannot be written|is a folder") as err:
        run(m, steps=3, **kw)
    assert m.steps == 0 and same_state(m.state_dict(), before)
    assert ("Permission denied" in str(err.value)) == (where == "read_only")


def test_checkpoint_folder_lost_mid_run_keeps_history_and_model(tmp_path):
    folder = tmp_path / "out"
    path = folder / "run.pt"

    class BreakFolder(Callback):
        def on_step_end(self, state):
            if state.step == 3:  # the folder disappears and a file takes its name
                shutil.rmtree(folder)
                folder.write_text("not a folder")

    m = Faulty()
    with pytest.warns(CheckpointWarning, match=f"nothing was written to {str(path)!r}") as rec:
        h = run(m, steps=6, checkpoint=path, checkpoint_every=2, callbacks=[BreakFolder()])
    assert len(rec) == 3                           # steps 4, 6 and the end
    ref, h_ref = reference(6, steps=6)
    assert h.loss == h_ref.loss and same_state(m.state_dict(), ref.state_dict())


def test_disk_full_write_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "run.pt"
    real_save, calls = torch.save, []

    def flaky_save(obj, f, *args, **kwargs):
        calls.append(obj["loop"]["step"])
        if obj["loop"]["step"] == 4:  # the disk fills up halfway through this write
            f.write(b"\0" * 100)
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", flaky_save)
    seen = {}

    class Peek(Callback):
        def on_step_end(self, state):
            if state.step == 5:
                seen["step"] = load_checkpoint(path)["loop"]["step"]

    m = Faulty()
    with pytest.warns(CheckpointWarning, match="at step 4: nothing was written .*No space left"):
        h = run(m, steps=6, checkpoint=path, checkpoint_every=2, callbacks=[Peek()])
    assert calls == [2, 4, 6, 6] and seen["step"] == 2   # the step-2 file survived the failed write
    assert os.listdir(tmp_path) == ["run.pt"]            # no half-written temporary file
    assert_consistent(path, m, h, 6)


# -- 3. a second Ctrl-C inside on_step_end -------------------------------------------------------------
def double_ctrl_c() -> None:
    os.kill(os.getpid(), signal.SIGINT)   # first: "stop after this step"
    os.kill(os.getpid(), signal.SIGINT)   # second: stop now (KeyboardInterrupt raised here)


def test_second_ctrl_c_inside_method_on_step_end_saves_one_consistent_step(tmp_path):
    path = tmp_path / "run.pt"
    m = Faulty(on_step_end_hook=lambda step: double_ctrl_c() if step == 5 else None)
    h = run(m, steps=10, checkpoint=path)
    # Step 5 had updated the weights and half of the bookkeeping (calls, not yet ema): rolled back.
    assert h.interrupted and h.step == [1, 2, 3, 4]
    ref, h_ref = reference(4)
    assert same_state(m.state_dict(), ref.state_dict()) and h.loss == h_ref.loss
    assert_consistent(path, m, h, 4)
    resumed = Faulty()
    h2 = run(resumed, steps=10, resume=path)
    full, h_full = reference(10)
    assert same_state(resumed.state_dict(), full.state_dict()) and h2.loss == h_full.loss


def test_second_ctrl_c_inside_a_callback_keeps_the_finished_step(tmp_path):
    class Interrupt(Callback):
        def on_step_end(self, state):
            if state.step == 5:
                double_ctrl_c()

    path = tmp_path / "run.pt"
    m = Faulty()
    h = run(m, steps=10, checkpoint=path, callbacks=[Interrupt()])
    assert h.interrupted and h.step == [1, 2, 3, 4, 5]
    assert_consistent(path, m, h, 5)


# -- resume checks the data; fit checks the data kind ---------------------------------------------------
def trained(tmp_path) -> str:
    data = dataset()
    data.meta = {"options": {"size": 4}, "seed": 0}
    path = tmp_path / "run.pt"
    run(Faulty(), steps=2, data=data, checkpoint=path)
    return path


@pytest.mark.parametrize("change, match", [
    (lambda d: setattr(d, "name", "other"), "name 'random' in the checkpoint, 'other' here"),
    (lambda d: d.meta.update(options={"size": 8}), r"options \{'size': 4\} in the checkpoint"),
    (lambda d: d.meta.update(seed=1), "seed 0 in the checkpoint, 1 here"),
    (lambda d: setattr(d, "split", "test"), "split 'train' in the checkpoint"),
    (lambda d: setattr(d, "kind", "clip"), None),   # refused by the kind check first
])
def test_resume_refuses_other_data(tmp_path, change, match):
    path = trained(tmp_path)
    data = dataset()
    data.meta = {"options": {"size": 4}, "seed": 0}
    change(data)
    with pytest.raises(ValueError, match=match or "holds clip data"):
        run(Faulty(), steps=4, data=data, resume=path)
    other = dataset(n=64)
    other.meta = {"options": {"size": 4}, "seed": 0}
    with pytest.raises(ValueError, match="samples 48 in the checkpoint, 64 here"):
        run(Faulty(), steps=4, data=other, resume=path)


def test_fit_compares_method_kinds_with_the_data_kind():
    with pytest.raises(ValueError, match=r"method 'simclr' trains on image or spectrogram data, but "
                                         r"data='corpus' holds text data"):
        fit(sslkit.create("simclr"), sslkit.data.load("corpus"), steps=1, device="cpu")
