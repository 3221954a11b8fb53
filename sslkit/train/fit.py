"""The training engine: ``fit(method, data, minutes=2)``. Plain PyTorch, one loop.

``fit`` runs named phases - check the arguments, place model and data, build optimiser and
schedule, restore - then the loop, which reads (``fit``'s body):

    while not finished:
        idx = next batch of indices             drawn on the device, no DataLoader
        step(idx)                               forward, backward, guarded update, on_step_end
        every log_every steps:  read()          logged numbers -> host (one sync), checked
                                commit()        the new last consistent state (safety.Snapshot)
        callbacks, every checkpoint_every steps: save()

Nothing is lost when training breaks:

* A non-finite loss or gradient never reaches the saved state: the step is rolled back to the last
  commit (weights, EMA targets, optimiser, History, step count) and training stops with a warning
  (``on_nan="stop"``) or goes on without that step (``on_nan="skip"``, recorded in
  ``History.skipped``). See ``step.py`` for how the update is skipped on the device.
* Every output location is checked before the first step; a checkpoint that cannot be written
  later gives a :class:`CheckpointWarning` naming the file, and training and its History go on.
* Ctrl-C (and Jupyter's stop button) ends training after the current step, saves and returns the
  History with ``interrupted=True``. A second Ctrl-C stops at once and rolls back to the last
  commit, so the checkpoint is always one consistent step.

Stopping rules (``epochs``, ``steps``, ``minutes``) combine: training stops at the first one
reached; all count from the start of the run, including the part before a resume. With a time
budget the total number of steps - which the schedule and the methods' EMA/temperature schedules
need - is re-estimated at every read from the measured step time (:class:`StepBudget`).

No host-device sync in the loop body between reads: the logged scalars stay on the device and are
read every ``log_every`` steps (every step on the CPU, where a read costs nothing; every 25 on a GPU).
"""
from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from sslkit import checks, quick
from sslkit import distributed as dist
from sslkit.train.callbacks import Callback, CollapseMonitor
from sslkit.train.checkpoint import check_run, load_checkpoint
from sslkit.train.history import History
from sslkit.train.run import Run, Settings
from sslkit.train.safety import Interrupt, check_writable
from sslkit.train.schedules import WarmupCosine
from sslkit.train.step import PRECISIONS, resolve_precision

OPTIMIZERS = ("adamw", "sgd")
# Decoupled weight decay for AdamW (0.05: DINO/MAE/ViT recipes); L2 for SGD (5e-4: ResNet/CIFAR recipes).
DEFAULT_WEIGHT_DECAY = {"adamw": 0.05, "sgd": 5e-4}
ON_NAN = ("stop", "skip")
# Steps between reads on an accelerator: enough for Python to queue work well ahead of the GPU,
# few enough that the progress bar, LivePlot and a time budget stay current.
GPU_LOG_EVERY = 25


def fit(method: nn.Module, data: Any, *, epochs: int | None = None, steps: int | None = None,
        minutes: float | None = None, batch_size: int = 256, lr: float | None = None,
        weight_decay: float | None = None, warmup: float = 0.05, optimizer: str = "adamw",
        callbacks: Sequence[Callback] = (), checkpoint: str | os.PathLike | None = None,
        checkpoint_every: int | None = None, resume: str | os.PathLike | None = None, seed: int = 0,
        device: torch.device | str | None = None, compile: bool | None = None, progress: bool = True,
        history: History | None = None, monitor_collapse: bool = True, on_nan: str = "stop",
        log_every: int | None = None, precision: str | None = None) -> History:
    """Train ``method`` on ``data`` in place; return the :class:`History`.

    Args:
        method: an ``sslkit`` Method (``training_step``, ``on_step_end``, ``default_lr``, ``kinds``).
        data: a ``sslkit.data.Dataset`` of a kind in ``method.kinds``; copied to ``device`` once.
        epochs, steps, minutes: stopping rules; give at least one, the first reached wins.
        batch_size: the **global** batch (split over processes under torchrun).
        lr: peak learning rate; None -> ``method.default_lr * batch_size / 256`` (the linear scaling
            rule of Goyal et al. 2017, so a method's default holds at any batch size).
        weight_decay: None -> 0.05 for AdamW, 5e-4 for SGD. Biases and norm weights (1-D
            parameters) are never decayed. AdamW's betas come from ``method.adam_betas`` if set.
        warmup: fraction of the total steps with linear warm-up, in [0, 1).
        optimizer: "adamw" or "sgd" (momentum 0.9).
        callbacks: :class:`Callback` objects (``LivePlot``, ``KNNMonitor``, ...).
        checkpoint: file to write at the end, on interrupt and every ``checkpoint_every`` steps.
        resume: checkpoint to continue from (model, optimiser, schedule, RNG, data order, history);
            the run continues exactly as if never stopped, so the schedule's peak lr and warm-up
            come from the checkpoint (``lr``/``warmup`` here are not used); ``batch_size`` and the
            data (name, split, kind, options, sample shape) must be the ones it was trained with.
            Only rank 0's random streams are saved: under DDP the other ranks resume with fresh ones.
        seed: seeds the batch order and the method's randomness (views, masks); not the model init.
        device: None -> ``sslkit.device()`` (under torchrun: this rank's GPU, or the CPU).
        compile: ``torch.compile`` the training step; None -> on for CUDA. If compiling fails,
            a warning says why and training continues eagerly.
        progress: show a tqdm bar with loss and samples/s.
        history: a History to append to (e.g. of an earlier ``fit`` call on the same method);
            step numbers and times continue from it. Not together with ``resume``.
        monitor_collapse: add a :class:`CollapseMonitor` (warns if the features collapse).
        on_nan: a step whose loss or gradients are not finite is rolled back; then "stop" ends
            training with a warning, "skip" goes on with the next batch (the step is listed in
            ``History.skipped``; after 10 in a row training stops). "skip" reads every step.
        log_every: read the logged numbers (and check them) every N steps; None -> 1 on the CPU,
            25 on a GPU. Callbacks see the History as of the last read; a non-finite step in
            ``on_nan="stop"`` mode rolls training back to the last read.
        precision: "bf16", "fp16" (with loss scaling) or "fp32"; None -> bf16 on GPUs that
            support it, fp16 on older GPUs, fp32 on the CPU/MPS.
    """
    s, callbacks = check_arguments(method, data, callbacks, history, resume, epochs=epochs,
                                   steps=steps, minutes=minutes, batch_size=batch_size, lr=lr,
                                   weight_decay=weight_decay, warmup=warmup, optimizer=optimizer,
                                   checkpoint=checkpoint, checkpoint_every=checkpoint_every,
                                   seed=seed, on_nan=on_nan, log_every=log_every,
                                   precision=precision, compile=compile, progress=progress)
    ckpt = load_checkpoint(resume) if resume is not None else None  # CheckpointError if bad
    if ckpt is not None:
        check_run(ckpt, method, data, s.batch_size)  # same method, data and batch size
    device = _device(device, s)
    method, data = place(method, data, device)
    opt, sched = build_optimizer(method, s, device)
    if monitor_collapse and not any(isinstance(cb, CollapseMonitor) for cb in callbacks):
        callbacks.append(CollapseMonitor())
    interrupt = Interrupt(enabled=not dist.is_distributed())
    run = Run(method, data, opt, sched, s, device, callbacks, interrupt)
    run.restore(ckpt, history)                       # resume, or start fresh; the first commit

    with interrupt, run.running():
        try:
            run.start()
            while not run.finished() and not interrupt.requested:
                idx = run.next_batch()
                if idx is None:                      # the end of an epoch
                    continue
                run.step(idx)                        # forward, backward, guarded update, on_step_end
                if run.read_due():
                    if not run.read():               # a non-finite step was rolled back: stop
                        break
                    run.commit()                     # this step is the last consistent state
                run.callbacks_step()
                if run.checkpoint_due():
                    run.save()
                if run.state.stop:
                    break
        except KeyboardInterrupt:                    # a second Ctrl-C, maybe in the middle of a step
            interrupt.requested = True
            run.rollback()                           # back to the last commit
        run.finish(interrupted=interrupt.requested)  # last read, on_train_end, save
    return run.history


# -- phase 1: check the arguments (nothing is touched before all of them pass) ------------------------
def check_arguments(method: Any, data: Any, callbacks: Sequence[Any], history: Any, resume: Any,
                    **a: Any) -> tuple[Settings, list[Callback]]:
    if not (isinstance(method, nn.Module) and callable(getattr(method, "training_step", None))):
        raise ValueError(f"method must be an sslkit Method (nn.Module with training_step); got "
                         f"{type(method).__name__}")
    if not (hasattr(data, "batches") and hasattr(data, "batch") and hasattr(data, "to")):
        raise ValueError(f"data must be a sslkit.data.Dataset; got {type(data).__name__}")
    kinds = tuple(getattr(method, "kinds", ()) or ())
    if kinds and getattr(data, "kind", None) not in kinds:
        raise ValueError(f"method {getattr(method, 'name', type(method).__name__)!r} trains on "
                         f"{' or '.join(kinds)} data, but data={getattr(data, 'name', '?')!r} holds "
                         f"{getattr(data, 'kind', '?')} data; choose a method for "
                         f"{getattr(data, 'kind', '?')} data or another dataset")
    if a["epochs"] is None and a["steps"] is None and a["minutes"] is None:
        raise ValueError("give at least one stopping rule: epochs=..., steps=... or minutes=... "
                         "(training stops at the first reached)")
    for name in ("epochs", "steps", "checkpoint_every", "log_every"):
        if a[name] is not None:
            a[name] = checks.integer(name, a[name], min=1)
    if a["minutes"] is not None:
        a["minutes"] = checks.number("minutes", a["minutes"], min=0, min_open=True)
    if quick.enabled():  # SSLKIT_QUICK=1: smoke-test mode, a few steps whatever was asked
        a["steps"] = quick.MAX_STEPS if a["steps"] is None else min(a["steps"], quick.MAX_STEPS)
    bs = a["batch_size"] = checks.integer("batch_size", a["batch_size"], min=1)
    if bs > len(data):
        raise ValueError(f"batch_size={bs} is larger than the dataset ({len(data)} samples); "
                         f"use batch_size <= {len(data)}")
    if bs % dist.world_size():
        raise ValueError(f"batch_size={bs} (global) must be divisible by the number of processes "
                         f"({dist.world_size()})")
    a["optimizer"] = checks.choice("optimizer", a["optimizer"], OPTIMIZERS)
    if a["lr"] is None:
        a["lr"] = float(getattr(method, "default_lr", 1e-3)) * bs / 256
    a["lr"] = checks.number("lr", a["lr"], min=0, min_open=True)
    if a["weight_decay"] is None:
        a["weight_decay"] = DEFAULT_WEIGHT_DECAY[a["optimizer"]]
    a["weight_decay"] = checks.number("weight_decay", a["weight_decay"], min=0)
    a["warmup"] = checks.number("warmup", a["warmup"], min=0, max=1, max_open=True)
    a["seed"] = checks.integer("seed", a["seed"])
    a["on_nan"] = checks.choice("on_nan", a["on_nan"], ON_NAN)
    if a["on_nan"] == "skip" and a["log_every"] not in (None, 1):
        raise ValueError(f"on_nan='skip' checks every step; log_every={a['log_every']} must be 1 "
                         f"(or None)")
    checks.choice("precision", a["precision"], (None, *PRECISIONS))
    checks.choice("compile", a["compile"], (None, True, False))
    callbacks = list(callbacks)
    for i, cb in enumerate(callbacks):
        if not isinstance(cb, Callback):
            raise ValueError(f"callbacks[{i}]={cb!r} is not a sslkit.train.Callback")
    if a["checkpoint_every"] is not None and a["checkpoint"] is None:
        raise ValueError("checkpoint_every needs checkpoint=PATH to write to")
    if resume is not None and history is not None:
        raise ValueError("give either resume= (continue a saved run) or history= (append to a "
                         "History), not both")
    if history is not None and not isinstance(history, History):
        raise ValueError(f"history must be a sslkit.train.History; got {type(history).__name__}")
    if dist.is_main():  # every output location, before any compute
        if a["checkpoint"] is not None:
            a["checkpoint"] = check_writable(a["checkpoint"], "checkpoint")
        for cb in callbacks:
            for path in cb.outputs():
                check_writable(path, f"{type(cb).__name__} path")
    return Settings(**a), callbacks


def _device(device: Any, s: Settings) -> torch.device:
    """The training device; fills in the device-dependent defaults of ``s``."""
    import sslkit
    dist_device = dist.init_from_env()
    if device is None:
        device = dist_device if dist_device is not None else sslkit.device()
    device = sslkit.device(str(device))  # validates: a known type, available on this machine
    if s.log_every is None:
        s.log_every = 1 if device.type == "cpu" or s.on_nan == "skip" else GPU_LOG_EVERY
    s.precision = resolve_precision(s.precision, device)
    s.compile = device.type == "cuda" if s.compile is None else s.compile
    return device


# -- phase 2: place model and data ----------------------------------------------------------------
def place(method: nn.Module, data: Any, device: torch.device) -> tuple[nn.Module, Any]:
    method.to(device)
    data = data.to(device)
    if device.type == "cuda" and data.kind == "image":
        method.to(memory_format=torch.channels_last)  # faster convolutions on tensor cores
    if dist.is_distributed() and any(isinstance(m, nn.modules.batchnorm._BatchNorm)
                                     for m in method.modules()):
        if device.type == "cuda":
            # BatchNorm statistics over the global batch, as in one process (before the optimiser
            # is built: the conversion creates new modules). A method may keep some BatchNorms
            # local (MoCo's key encoder: shuffle-BN) through methods.base.sync_batchnorm.
            from sslkit.methods.base import sync_batchnorm
            method = sync_batchnorm(method)
        elif dist.is_main():
            warnings.warn("SyncBatchNorm needs CUDA: on the CPU each process normalises with its own "
                          "shard's BatchNorm statistics, so results differ slightly from one process",
                          RuntimeWarning, stacklevel=3)
    return method, data


# -- phase 3: optimiser and schedule --------------------------------------------------------------
def build_optimizer(method: nn.Module, s: Settings, device: torch.device
                    ) -> tuple[torch.optim.Optimizer, WarmupCosine]:
    params = [p for p in method.parameters() if p.requires_grad]

    def make(fused: bool | None) -> torch.optim.Optimizer:
        groups = [{"params": [p for p in params if p.ndim >= 2], "weight_decay": s.weight_decay},
                  {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}]
        if s.optimizer == "adamw":
            betas = tuple(getattr(method, "adam_betas", (0.9, 0.999)))  # MAE: (0.9, 0.95)
            return torch.optim.AdamW(groups, lr=s.lr, betas=betas, fused=fused)
        return torch.optim.SGD(groups, lr=s.lr, momentum=0.9, fused=fused)  # 0.9: the standard SGD

    try:
        opt = make(True if use_fused(device, s.precision) else None)
    except RuntimeError:  # no fused kernel for this device
        opt = make(None)
    return opt, WarmupCosine(s.lr, warmup=s.warmup)


def use_fused(device: torch.device, precision: str) -> bool:
    """Fused optimiser kernels skip a non-finite update on the device (see step.py). The CPU keeps
    PyTorch's default kernels (a read there costs nothing) unless fp16 loss scaling needs the skip."""
    return device.type != "cpu" or precision == "fp16"
