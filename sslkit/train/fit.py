"""The training engine: ``fit(method, data, minutes=2)``. Plain PyTorch, one loop.

Per step: draw a batch of indices on the device, ``method.training_step(batch)`` (through DDP /
``torch.compile`` when used), backward, set the learning rate from the warm-up + cosine schedule,
optimiser step, ``method.on_step_end(step, total_steps)`` (EMA targets, queues, centres), log, run
callbacks, maybe checkpoint.

Stopping rules (``epochs``, ``steps``, ``minutes``) combine: training stops at the first one
reached; all of them count from the start of the run, including the part before a resume. With a
time budget the total number of steps - which the schedule and the methods' EMA/temperature
schedules need - is re-estimated after every step from the mean measured step time (see
:class:`sslkit.train.schedules.StepBudget`).

Ctrl-C (and Jupyter's stop button, which sends the same signal) ends training cleanly: the current
step finishes, a checkpoint is written if configured and the History comes back with
``interrupted=True``. A second Ctrl-C stops at once (still returning the History).
"""
from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import signal
import threading
import time
import warnings
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from sslkit import checks, quick
from sslkit import distributed as dist
from sslkit.train.callbacks import Callback, CollapseMonitor, TrainState
from sslkit.train.checkpoint import (
    CheckpointError, check_model_state, check_optimizer_state, load_checkpoint, save_checkpoint, unwrap)
from sslkit.train.history import History
from sslkit.train.schedules import StepBudget, WarmupCosine

OPTIMIZERS = ("adamw", "sgd")
# Decoupled weight decay for AdamW (0.05: DINO/MAE/ViT recipes); L2 for SGD (5e-4: ResNet/CIFAR recipes).
DEFAULT_WEIGHT_DECAY = {"adamw": 0.05, "sgd": 5e-4}


def fit(method: nn.Module, data: Any, *, epochs: int | None = None, steps: int | None = None,
        minutes: float | None = None, batch_size: int = 256, lr: float | None = None,
        weight_decay: float | None = None, warmup: float = 0.05, optimizer: str = "adamw",
        callbacks: Sequence[Callback] = (), checkpoint: str | os.PathLike | None = None,
        checkpoint_every: int | None = None, resume: str | os.PathLike | None = None, seed: int = 0,
        device: torch.device | str | None = None, compile: bool = False, progress: bool = True,
        history: History | None = None, monitor_collapse: bool = True) -> History:
    """Train ``method`` on ``data`` in place; return the :class:`History`.

    Args:
        method: an ``sslkit`` Method (``training_step``, ``on_step_end``, ``default_lr``).
        data: a ``sslkit.data.Dataset``; copied to ``device`` once, batches are indexed there.
        epochs, steps, minutes: stopping rules; give at least one, the first reached wins.
        batch_size: the **global** batch (split over processes under torchrun).
        lr: peak learning rate; None -> ``method.default_lr * batch_size / 256`` (the linear scaling
            rule of Goyal et al. 2017, so a method's default holds at any batch size).
        weight_decay: None -> 0.05 for AdamW, 5e-4 for SGD. Biases and norm weights (1-D
            parameters) are never decayed.
        warmup: fraction of the total steps with linear warm-up, in [0, 1).
        optimizer: "adamw" or "sgd" (momentum 0.9).
        callbacks: :class:`Callback` objects (``LivePlot``, ``KNNMonitor``, ...).
        checkpoint: file to write at the end, on interrupt and every ``checkpoint_every`` steps.
        resume: checkpoint to continue from (model, optimiser, schedule, RNG, data order, history);
            the run continues exactly as if never stopped, so the schedule's peak lr and warm-up
            come from the checkpoint (``lr``/``warmup`` here are not used) and ``batch_size``
            must be the one it was trained with. Only rank 0's random streams are saved: under
            DDP the other ranks resume with fresh ones.
        seed: seeds the batch order and the method's randomness (views, masks); not the model init.
        device: None -> ``sslkit.device()`` (under torchrun: this rank's GPU, or the CPU).
        compile: ``torch.compile`` the training step.
        progress: show a tqdm bar with loss and samples/s.
        history: a History to append to (e.g. of an earlier ``fit`` call on the same method);
            step numbers and times continue from it. Not together with ``resume``.
        monitor_collapse: add a :class:`CollapseMonitor` (warns if the features collapse).
    """
    # -- validate everything before touching the model --------------------------------------------
    if not (isinstance(method, nn.Module) and callable(getattr(method, "training_step", None))):
        raise ValueError(f"method must be an sslkit Method (nn.Module with training_step); got "
                         f"{type(method).__name__}")
    if not (hasattr(data, "batches") and hasattr(data, "batch") and hasattr(data, "to")):
        raise ValueError(f"data must be a sslkit.data.Dataset; got {type(data).__name__}")
    if epochs is None and steps is None and minutes is None:
        raise ValueError("give at least one stopping rule: epochs=..., steps=... or minutes=... "
                         "(training stops at the first reached)")
    epochs = None if epochs is None else checks.integer("epochs", epochs, min=1)
    steps = None if steps is None else checks.integer("steps", steps, min=1)
    minutes = None if minutes is None else checks.number("minutes", minutes, min=0, min_open=True)
    if quick.enabled():  # SSLKIT_QUICK=1: smoke-test mode, a few steps whatever was asked
        steps = quick.MAX_STEPS if steps is None else min(steps, quick.MAX_STEPS)
    batch_size = checks.integer("batch_size", batch_size, min=1)
    if batch_size > len(data):
        raise ValueError(f"batch_size={batch_size} is larger than the dataset ({len(data)} samples); "
                         f"use batch_size <= {len(data)}")
    if batch_size % dist.world_size():
        raise ValueError(f"batch_size={batch_size} (global) must be divisible by the number of "
                         f"processes ({dist.world_size()})")
    optimizer = checks.choice("optimizer", optimizer, OPTIMIZERS)
    if lr is None:
        lr = float(getattr(method, "default_lr", 1e-3)) * batch_size / 256
    lr = checks.number("lr", lr, min=0, min_open=True)
    weight_decay = DEFAULT_WEIGHT_DECAY[optimizer] if weight_decay is None else weight_decay
    weight_decay = checks.number("weight_decay", weight_decay, min=0)
    warmup = checks.number("warmup", warmup, min=0, max=1, max_open=True)
    callbacks = list(callbacks)
    for i, cb in enumerate(callbacks):
        if not isinstance(cb, Callback):
            raise ValueError(f"callbacks[{i}]={cb!r} is not a sslkit.train.Callback")
    if checkpoint_every is not None:
        checkpoint_every = checks.integer("checkpoint_every", checkpoint_every, min=1)
        if checkpoint is None:
            raise ValueError("checkpoint_every needs checkpoint=PATH to write to")
    seed = checks.integer("seed", seed)
    if resume is not None and history is not None:
        raise ValueError("give either resume= (continue a saved run) or history= (append to a "
                         "History), not both")
    if history is not None and not isinstance(history, History):
        raise ValueError(f"history must be a sslkit.train.History; got {type(history).__name__}")
    ckpt = load_checkpoint(resume) if resume is not None else None  # CheckpointError if bad

    # -- placement ----------------------------------------------------------------------------------
    dist_device = dist.init_from_env()
    import sslkit
    if device is None:
        device = dist_device if dist_device is not None else sslkit.device()
    device = sslkit.device(str(device))  # validates: a known type, available on this machine
    cuda = device.type == "cuda"
    was_training = method.training
    method.to(device).train()
    data = data.to(device)
    image_like = getattr(data, "kind", None) == "image"
    if cuda and image_like:
        method.to(memory_format=torch.channels_last)  # faster convolutions with bf16 tensor cores

    if dist.is_distributed() and any(isinstance(m, nn.modules.batchnorm._BatchNorm)
                                     for m in method.modules()):
        if cuda:
            # BatchNorm statistics over the global batch, as in one process (before the optimiser
            # is built: the conversion creates new parameter objects).
            method = nn.SyncBatchNorm.convert_sync_batchnorm(method)
        elif dist.is_main():
            warnings.warn("SyncBatchNorm needs CUDA: on the CPU each process normalises with its own "
                          "shard's BatchNorm statistics, so results differ slightly from one process",
                          RuntimeWarning, stacklevel=2)

    # -- optimiser and schedule -----------------------------------------------------------------
    params = [p for p in method.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if p.ndim >= 2], "weight_decay": weight_decay},
              {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}]
    if optimizer == "adamw":
        opt = torch.optim.AdamW(groups, lr=lr, fused=cuda or None)
    else:
        opt = torch.optim.SGD(groups, lr=lr, momentum=0.9)  # momentum 0.9: the standard SGD setting
    sched = WarmupCosine(lr, warmup=warmup)
    steps_per_epoch = len(data) // batch_size
    budget = StepBudget(steps, epochs, minutes, steps_per_epoch)
    gen = torch.Generator().manual_seed(seed)  # batch order; identical on every rank

    # -- fresh start or resume --------------------------------------------------------------------
    done, epoch, batch_in_epoch, elapsed0 = 0, 0, 0, 0.0
    step_offset = 0
    if ckpt is not None:
        _check_resume(ckpt, method, opt, batch_size)
        unwrap(method).load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        sched.load_state_dict(ckpt["scheduler"])
        history = History.from_dict(ckpt["history"])
        history.interrupted = False
        loop = ckpt["loop"]
        done, epoch, batch_in_epoch = int(loop["step"]), int(loop["epoch"]), int(loop["batch"])
        elapsed0 = history.elapsed
        rng = ckpt["rng"]
        gen.set_state(rng["data"])
        if dist.rank() == 0:
            torch.set_rng_state(rng["torch"])
            if cuda and rng.get("cuda"):
                torch.cuda.set_rng_state_all(rng["cuda"])
        else:  # only rank 0's streams are saved; other ranks get fresh, distinct ones
            torch.manual_seed(seed + 1000 * dist.rank() + done)
    else:
        torch.manual_seed(seed + dist.rank())  # distinct augmentations per rank, same batch order
        if history is None:
            history = History()
        elif len(history):
            step_offset, elapsed0 = history.step[-1], history.elapsed
        history.interrupted = False
    epoch_gen_state = gen.get_state()  # the sampler's state at the start of the current epoch

    # -- wrappers -----------------------------------------------------------------------------------
    model: nn.Module = method
    if dist.is_distributed():
        # A method whose loss leaves some trainable parameters unused in some steps sets the class
        # attribute find_unused_parameters = True (DDP then searches the graph every step).
        model = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if cuda else None,
            find_unused_parameters=bool(getattr(method, "find_unused_parameters", False)))
    if compile:
        model = torch.compile(model)

    config = _run_config(method, data, dict(epochs=epochs, steps=steps, minutes=minutes,
                         batch_size=batch_size, lr=lr, weight_decay=weight_decay, warmup=warmup,
                         optimizer=optimizer, seed=seed))
    if monitor_collapse and not any(isinstance(cb, CollapseMonitor) for cb in callbacks):
        callbacks.append(CollapseMonitor())
    is_main = dist.is_main()
    total = budget.total(done, elapsed0)
    state = TrainState(method=method, step=done + step_offset, total_steps=total + step_offset,
                       epoch=epoch, history=history, data=data, optimizer=opt, elapsed=elapsed0,
                       is_main=is_main)

    def write_checkpoint() -> None:
        if checkpoint is None or not is_main:
            return
        rng = {"torch": torch.get_rng_state(), "data": epoch_gen_state,
               "cuda": torch.cuda.get_rng_state_all() if cuda else []}
        save_checkpoint(checkpoint, method, opt, sched, history, config, rng,
                        loop={"step": done, "epoch": epoch, "batch": batch_in_epoch})

    from tqdm.auto import tqdm
    bar = tqdm(total=total, initial=done, unit="step", disable=not (progress and is_main),
               dynamic_ncols=True, desc=getattr(method, "name", "fit"))
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if cuda else contextlib.nullcontext()
    batches = None
    throughput_ema = None
    t_start = time.perf_counter()
    elapsed = elapsed0
    stopped_by_nan = False
    with _GracefulInterrupt(enabled=not dist.is_distributed()) as interrupt:
        try:
            for cb in callbacks:
                cb.on_train_start(state)
            while not budget.finished(done, epoch, elapsed) and not interrupt.requested:
                if batches is None:  # a new epoch (or the resumed one): redraw its permutation
                    epoch_gen_state = gen.get_state()
                    batches = data.batches(batch_size, generator=gen)
                    for _ in range(batch_in_epoch):
                        next(batches)
                idx = next(batches, None)
                if idx is None:
                    epoch, batch_in_epoch, batches = epoch + 1, 0, None
                    continue
                t0 = time.perf_counter()
                x = data.batch(dist.shard(idx))
                if cuda and image_like and x.ndim == 4:
                    x = x.contiguous(memory_format=torch.channels_last)
                step_lr = sched.lr(done, total)
                for g in opt.param_groups:
                    g["lr"] = step_lr
                with autocast:
                    out = model(x)
                loss = out.get("loss") if isinstance(out, dict) else None
                if not (torch.is_tensor(loss) and loss.numel() == 1):
                    raise ValueError(f"{type(method).__name__}.training_step must return a dict with "
                                     f"a scalar 'loss' tensor; got {_describe(out)}")
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                done, batch_in_epoch = done + 1, batch_in_epoch + 1
                method.on_step_end(done, total)

                # The logged scalars, the step time and the elapsed time, averaged over processes
                # under DDP - so every rank sees the same numbers, estimates the same total (same
                # lr schedule) and stops at the same step.
                names = [k for k, v in out.items() if torch.is_tensor(v) and v.numel() == 1]
                values = torch.stack([out[k].detach().float() for k in names]).tolist()  # one sync
                now = time.perf_counter()
                values += [now - t0, elapsed0 + now - t_start]
                if dist.is_distributed():
                    values = dist.all_reduce_mean(torch.tensor(values, dtype=torch.float64,
                                                               device=device)).tolist()
                dt, elapsed = values[-2], values[-1]
                logged = dict(zip(names, values[:-2]))
                budget.record(done, elapsed)
                throughput = batch_size / max(dt, 1e-9)
                history.append(step=done + step_offset, epoch=epoch, loss=logged.pop("loss"),
                               lr=step_lr, time=elapsed, throughput=throughput, terms=logged)
                if not math.isfinite(history.loss[-1]):
                    stopped_by_nan = True
                    break
                total = budget.total(done, elapsed)
                throughput_ema = throughput if throughput_ema is None else \
                    0.9 * throughput_ema + 0.1 * throughput
                bar.total = max(total, done)
                bar.set_postfix(loss=f"{history.loss[-1]:.4f}", samples_s=f"{throughput_ema:,.0f}",
                                refresh=False)
                bar.update(1)

                state.step, state.total_steps = done + step_offset, total + step_offset
                state.epoch, state.elapsed = epoch, elapsed
                for cb in callbacks:
                    cb.on_step_end(state)
                if checkpoint_every and done % checkpoint_every == 0:
                    write_checkpoint()
                if state.stop:
                    break
        except KeyboardInterrupt:
            interrupt.requested = True
        history.interrupted = interrupt.requested
        bar.close()
        for cb in callbacks:
            cb.on_train_end(state)
        write_checkpoint()
    method.train(was_training)
    if stopped_by_nan:
        warnings.warn(f"training stopped at step {done}: the loss became {history.loss[-1]} "
                      f"(diverged). Lower the learning rate (lr={lr:g}) or the batch size.",
                      RuntimeWarning, stacklevel=2)
    return history


def _check_resume(ckpt: dict, method: nn.Module, opt: torch.optim.Optimizer, batch_size: int) -> None:
    """Validate the whole checkpoint against this run before anything is loaded."""
    path = ckpt["path"]
    saved_name = ckpt["config"].get("method")
    name = getattr(method, "name", None)
    if saved_name is not None and name is not None and saved_name != name:
        raise CheckpointError(f"checkpoint {path!r} holds a {saved_name!r} run; cannot resume a "
                              f"{name!r} method from it")
    check_model_state(ckpt, method)
    check_optimizer_state(ckpt, opt)
    saved_bs = ckpt["config"].get("fit", {}).get("batch_size")
    if saved_bs is not None and saved_bs != batch_size:
        raise ValueError(f"batch_size={batch_size} but checkpoint {path!r} was trained with "
                         f"batch_size={saved_bs}; resume with the same batch size")
    loop, rng = ckpt["loop"], ckpt["rng"]
    for key in ("step", "epoch", "batch"):
        if not isinstance(loop.get(key), int):
            raise CheckpointError(f"checkpoint {path!r}: loop[{key!r}] is missing or not an int")
    for key in ("torch", "data"):
        if not isinstance(rng.get(key), torch.Tensor):
            raise CheckpointError(f"checkpoint {path!r}: rng[{key!r}] is missing or not a tensor")
    for key in ("base_lr", "warmup", "final_ratio"):
        if key not in ckpt["scheduler"]:
            raise CheckpointError(f"checkpoint {path!r}: scheduler state lacks {key!r}")
    try:
        History.from_dict(ckpt["history"])
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"checkpoint {path!r}: history is malformed ({err})") from err


def _run_config(method: nn.Module, data: Any, fit_config: dict) -> dict[str, Any]:
    """Plain-Python description of the run, enough for ``load_method`` to rebuild the method."""
    method = unwrap(method)
    cfg = getattr(method, "config", None)
    method_config = dataclasses.asdict(cfg) if dataclasses.is_dataclass(cfg) else {}
    backbone = getattr(method, "backbone_name", None)
    return {
        "method": getattr(method, "name", type(method).__name__),
        "method_config": method_config,
        "backbone": backbone if isinstance(backbone, str) else None,
        "data": {"name": getattr(data, "name", None), "split": getattr(data, "split", None),
                 "kind": getattr(data, "kind", None), "sample_shape": list(data.sample_shape),
                 "options": dict(getattr(data, "meta", {}).get("options", {}))},
        "fit": fit_config,
    }


def _describe(out: Any) -> str:
    if isinstance(out, dict):
        return "{" + ", ".join(f"{k!r}: {tuple(v.shape) if torch.is_tensor(v) else type(v).__name__}"
                               for k, v in out.items()) + "}"
    return type(out).__name__


class _GracefulInterrupt:
    """First SIGINT: set ``requested`` (the loop stops after the current step). Second: raise.

    Only in the main thread of a single process (signal handlers cannot be set elsewhere, and ranks
    of a DDP run must not stop at different steps).
    """

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled and threading.current_thread() is threading.main_thread()
        self.requested = False
        self._previous = None

    def _handler(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __enter__(self) -> _GracefulInterrupt:
        if self.enabled:
            self._previous = signal.signal(signal.SIGINT, self._handler)
        return self

    def __exit__(self, *exc) -> bool:
        if self.enabled:
            signal.signal(signal.SIGINT, self._previous)
        return False
