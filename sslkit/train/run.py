"""One training run's state and its phases: restore, step, read, commit, rollback, save, finish.

:func:`sslkit.train.fit` checks the arguments, builds the optimiser and calls these in its loop
(see the loop in ``fit.py``). The state a checkpoint holds is the *last commit*
(:class:`sslkit.train.safety.Snapshot`): the live state equals it right after each read, and goes
back to it when a step turns out non-finite or is cut short by a second Ctrl-C.
"""
from __future__ import annotations

import contextlib
import math
import time
import warnings
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from sslkit import distributed as dist
from sslkit.train.callbacks import Callback, TrainState
from sslkit.train.checkpoint import (CheckpointWarning, check_model_state, check_optimizer_state,
                                     run_config, save_checkpoint, unwrap)
from sslkit.train.history import History
from sslkit.train.host import heap_kept
from sslkit.train.safety import Interrupt, Snapshot
from sslkit.train.schedules import StepBudget, WarmupCosine
from sslkit.train.step import TrainStep, memory_format

# on_nan="skip" gives up after this many non-finite steps in a row: the run has diverged.
MAX_SKIPS_IN_A_ROW = 10


@dataclass
class Settings:
    """fit()'s arguments after checking; ``None`` defaults are filled in by ``_device``."""

    epochs: int | None
    steps: int | None
    minutes: float | None
    batch_size: int
    lr: float
    weight_decay: float
    warmup: float
    optimizer: str
    seed: int
    checkpoint: str | None
    checkpoint_every: int | None
    on_nan: str
    log_every: int | None
    precision: str | None
    compile: bool | None
    progress: bool


class Run:
    """The mutable state of one ``fit`` call; each method is one phase of the loop."""

    def __init__(self, method: nn.Module, data: Any, opt: torch.optim.Optimizer, sched: WarmupCosine,
                 s: Settings, device: torch.device, callbacks: list[Callback], interrupt: Interrupt
                 ) -> None:
        self.method, self.data, self.opt, self.sched, self.s = method, data, opt, sched, s
        self.device, self.callbacks, self.is_main = device, callbacks, dist.is_main()
        self.interrupt = interrupt  # commit, rollback and finish run shielded: a Ctrl-C waits for them
        self.budget = StepBudget(s.steps, s.epochs, s.minutes, len(data) // s.batch_size)
        self.gen = torch.Generator().manual_seed(s.seed)  # batch order; identical on every rank
        self.snapshot = Snapshot(method, opt)
        self.layout = memory_format(method, data, device)  # of the batches, as place() set the model
        self.config = run_config(method, data, asdict(s))
        self.window: list[tuple[int, int, float, tuple[str, ...], torch.Tensor, float]] = []
        self.busy = 0.0            # host seconds spent in the steps of the window
        self.batches = None
        self.skips_in_a_row = 0
        self.rolled_back = False   # True once the live state was put back to the snapshot
        self.stopped_why: str | None = None
        self.was_training = method.training

    def restore(self, ckpt: dict | None, history: History | None) -> None:
        """Load a checkpoint (checked whole before anything is copied), or start fresh."""
        self.done = self.epoch = self.batch = self.offset = 0
        self.elapsed0 = 0.0
        if ckpt is not None:
            check_model_state(ckpt, self.method)
            check_optimizer_state(ckpt, self.opt)
            unwrap(self.method).load_state_dict(ckpt["model"])
            self.opt.load_state_dict(ckpt["optimizer"])
            self.sched.load_state_dict(ckpt["scheduler"])
            history = History.from_dict(ckpt["history"])
            loop, rng = ckpt["loop"], ckpt["rng"]
            self.done, self.epoch, self.batch = loop["step"], loop["epoch"], loop["batch"]
            self.elapsed0 = history.elapsed
            self.gen.set_state(rng["data"])
            if dist.rank() == 0:
                torch.set_rng_state(rng["torch"])
                if self.device.type == "cuda" and rng.get("cuda"):
                    torch.cuda.set_rng_state_all(rng["cuda"])
            else:  # only rank 0's streams are saved; other ranks get fresh, distinct ones
                torch.manual_seed(self.s.seed + 1000 * dist.rank() + self.done)
        else:
            torch.manual_seed(self.s.seed + dist.rank())  # distinct views per rank, same batch order
            history = History() if history is None else history
            if len(history):
                self.offset, self.elapsed0 = history.step[-1], history.elapsed
        history.interrupted = False
        self.history, self.elapsed = history, self.elapsed0
        self.epoch_gen_state = self.gen.get_state()  # the sampler's state at the start of the epoch
        self._wrap()

    def _wrap(self) -> None:
        """DDP (after loading: it broadcasts rank 0's weights) and the training step."""
        model = self.method
        if dist.is_distributed():
            # Method.find_unused_parameters: some trainable parameters may get no gradient in a step.
            model = nn.parallel.DistributedDataParallel(
                model, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=bool(getattr(self.method, "find_unused_parameters", False)))
        self.stepper = TrainStep(self.method, model, self.opt, self.device, self.s.precision,
                                 self.s.compile)
        self.total = self.budget.total(self.done, self.elapsed)
        self.state = TrainState(method=self.method, step=self.done + self.offset,
                                total_steps=self.total + self.offset, epoch=self.epoch,
                                history=self.history, data=self.data, optimizer=self.opt,
                                elapsed=self.elapsed, is_main=self.is_main)
        self.commit()  # what a failing first step goes back to

    @contextlib.contextmanager
    def running(self):
        from tqdm.auto import tqdm
        self.bar = tqdm(total=self.total, initial=self.done, unit="step", dynamic_ncols=True,
                        disable=not (self.s.progress and self.is_main),
                        desc=getattr(self.method, "name", "fit"))
        benchmark = torch.backends.cudnn.benchmark
        # Fixed shapes: let cuDNN time its kernels once per shape and keep the fastest.
        torch.backends.cudnn.benchmark = benchmark or self.device.type == "cuda"
        self.method.train()
        try:
            with heap_kept(self.device):  # CPU: no page faults for each step's activations
                yield
        finally:
            torch.backends.cudnn.benchmark = benchmark
            self.bar.close()
            self.method.train(self.was_training)
            if self.device.type == "cpu" and self.layout is torch.channels_last:
                # channels-last is the run's choice on the CPU: hand the model back in the default
                # layout, so it computes after fit bit for bit as a fresh copy of its weights.
                self.method.to(memory_format=torch.contiguous_format)

    def start(self) -> None:
        self.t_start = time.perf_counter()
        for cb in self.callbacks:
            cb.on_train_start(self.state)

    def finished(self) -> bool:
        return self.budget.finished(self.done, self.epoch, self.elapsed)

    def next_batch(self) -> torch.Tensor | None:
        if self.batches is None:  # a new epoch (or the resumed one): draw its permutation
            self.epoch_gen_state = self.gen.get_state()
            self.batches = self.data.batches(self.s.batch_size, generator=self.gen)
            for _ in range(self.batch):
                next(self.batches)
        idx = next(self.batches, None)
        if idx is None:
            self.epoch, self.batch, self.batches = self.epoch + 1, 0, None
        return idx

    def step(self, idx: torch.Tensor) -> None:
        """One optimiser step; nothing in here waits for the device."""
        t0 = time.perf_counter()
        x = self.data.batch(dist.shard(idx))
        if x.ndim == 4 and self.layout is not torch.contiguous_format:
            x = x.contiguous(memory_format=self.layout)
        lr = self.sched.lr(self.done, self.total)
        out, bad = self.stepper(x, lr)
        self.done, self.batch = self.done + 1, self.batch + 1
        self.method.on_step_end(self.done, self.total)
        names = tuple(k for k, v in out.items() if torch.is_tensor(v) and v.numel() == 1)
        values = torch.stack([out[k].detach().float().reshape(()) for k in names] + [bad])
        self.busy += time.perf_counter() - t0
        self.window.append((self.done, self.epoch, lr, names, values, self.elapsed_now()))
        self.bar.update(1)
        self.state.step = self.done + self.offset

    def elapsed_now(self) -> float:
        return self.elapsed0 + time.perf_counter() - self.t_start

    def read_due(self) -> bool:
        return self.done % self.s.log_every == 0 or self.checkpoint_due()

    def checkpoint_due(self) -> bool:
        return bool(self.s.checkpoint_every) and self.done % self.s.checkpoint_every == 0

    def read(self) -> bool:
        """Bring the window's numbers to the host (the one sync), check them, log them."""
        t0 = time.perf_counter()
        flat = torch.cat([w[4] for w in self.window])
        if dist.is_distributed():  # every rank logs (and checks) the same averaged numbers
            flat = dist.all_reduce_mean(flat)
        values = flat.tolist()
        self.busy += time.perf_counter() - t0
        busy, elapsed = self.busy, self.elapsed_now()
        if dist.is_distributed():  # ranks agree on time: same total estimate, same stopping step
            busy, elapsed = dist.all_reduce_mean(torch.tensor(
                [busy, elapsed], dtype=torch.float64, device=self.device)).tolist()
        rows, self.window, self.busy = self.window, [], 0.0
        self.elapsed = self.state.elapsed = elapsed
        self.budget.record(self.done, elapsed)
        self.total = self.budget.total(self.done, elapsed)
        self.state.total_steps = self.total + self.offset
        throughput = self.s.batch_size * len(rows) / max(busy, 1e-9)
        i = 0
        for n, (step, epoch, lr, names, _, t) in enumerate(rows):
            logged = dict(zip(names, values[i:i + len(names)]))
            i += len(names) + 1
            if values[i - 1] > 0:  # not finite (on any rank)
                return self._non_finite(step, logged.get("loss", math.nan))
            self.history.append(step=step + self.offset, epoch=epoch, loss=logged.pop("loss"),
                                lr=lr, time=elapsed if n == len(rows) - 1 else t,
                                throughput=throughput, terms=logged)
        self.skips_in_a_row = 0
        self.bar.total = max(self.total, self.done)
        self.bar.set_postfix(loss=f"{self.history.last_loss:.4f}", samples_s=f"{throughput:,.0f}",
                             refresh=False)  # drawn with the next update, at most 10 times a second
        return True

    def _non_finite(self, step: int, loss: float) -> bool:
        what = (f"the loss was {loss}" if not math.isfinite(loss) else "a gradient was not finite")
        if self.s.on_nan == "skip":
            self.skips_in_a_row += 1
            if self.skips_in_a_row < MAX_SKIPS_IN_A_ROW:
                self.snapshot.restore()  # the update and everything the step changed: undone
                self.history.skipped.append(step + self.offset)
                return True
            what += f" ({MAX_SKIPS_IN_A_ROW} steps in a row)"
        self.rollback()
        saved = f" (saved to {self.s.checkpoint!r})" if self.s.checkpoint else ""
        self.stopped_why = (
            f"training stopped at step {step + self.offset}: {what} - the run diverged. The model, "
            f"optimiser and History are those of step {self.done + self.offset}, the last finite "
            f"step checked (checks every {self.s.log_every} step(s)){saved}. Lower the learning rate "
            f"(lr={self.s.lr:g}) or the batch size, check the inputs, or pass on_nan='skip' to "
            f"skip such steps.")
        return False

    def commit(self) -> None:
        with self.interrupt.shielded():
            self._commit()

    def _commit(self) -> None:
        self.snapshot.take({"done": self.done, "epoch": self.epoch, "batch": self.batch,
                            "data": self.epoch_gen_state, "rng": self._rng()})
        self.stepper.new_window()
        self.rolled_back = False

    def rollback(self) -> None:
        """Back to the last commit: weights, buffers, optimiser, History, step count."""
        with self.interrupt.shielded():
            self._rollback()

    def _rollback(self) -> None:
        p = self.snapshot.restore()
        self.window, self.busy = [], 0.0
        self.done, self.epoch, self.batch, self.epoch_gen_state = (p["done"], p["epoch"], p["batch"],
                                                                   p["data"])
        self.history.rewind(self.done + self.offset)
        self.state.step, self.state.epoch = self.done + self.offset, self.epoch
        self.rolled_back = True

    def callbacks_step(self) -> None:
        self.state.epoch = self.epoch
        for cb in self.callbacks:
            cb.on_step_end(self.state)

    def save(self, rng: dict | None = None) -> None:
        """Write the last commit (which the live state equals unless it was rolled back)."""
        if self.s.checkpoint is None or not self.is_main:
            return
        p = self.snapshot.position
        rng = p["rng"] if self.rolled_back else (rng or self._rng())
        try:
            save_checkpoint(self.s.checkpoint, self.method, self.opt, self.sched, self.history,
                            self.config, {**rng, "data": p["data"]},
                            loop={"step": p["done"], "epoch": p["epoch"], "batch": p["batch"]})
        except OSError as err:
            warnings.warn(f"could not write the checkpoint at step {p['done'] + self.offset}: nothing "
                          f"was written to {self.s.checkpoint!r} ({type(err).__name__}: {err}); an "
                          f"earlier checkpoint there is unchanged. Training goes on; the History "
                          f"and the model stay in memory.", CheckpointWarning, stacklevel=3)

    def finish(self, interrupted: bool) -> None:
        with self.interrupt.shielded():
            self._finish(interrupted)

    def _finish(self, interrupted: bool) -> None:
        if self.window and self.read():  # the steps since the last read
            self.commit()
        rng = self._rng()  # before on_train_end, as the next step would have seen it
        self.history.interrupted = interrupted
        self.bar.close()
        try:
            for cb in self.callbacks:
                cb.on_train_end(self.state)
        finally:
            self.save(rng)
        if self.stopped_why is not None:
            warnings.warn(self.stopped_why, RuntimeWarning, stacklevel=3)

    def _rng(self) -> dict[str, Any]:
        cuda = self.device.type == "cuda"
        return {"torch": torch.get_rng_state(), "cuda": torch.cuda.get_rng_state_all() if cuda else []}
