"""One training step with nothing read back to the host: forward, backward, a guarded update.

    step = TrainStep(method, model, optimizer, device, precision="bf16", compile=True)
    out, bad = step(x, lr)        # out: the method's dict; bad: 0-dim float on the device, 1 = not finite

A GPU runs ahead of Python as long as Python never waits for a result. ``loss.item()``, ``if
tensor:`` or ``torch.tensor(3.0, device="cuda")`` make it wait ("host-device sync"), so the step
keeps every number on the device:

* **Non-finite check.** ``bad`` is 1 when the loss or any gradient is NaN/inf. It is computed with
  the kernel ``GradScaler`` uses (``_amp_foreach_non_finite_check_and_unscale_``), on the device.
* **Guarded update.** The fused AdamW/SGD kernels accept a ``found_inf`` tensor (again what
  ``GradScaler`` passes) and skip the update *on the device* when it is non-zero. Once a step is
  bad, ``window_bad`` keeps every later update skipped until the engine reads the flags (every
  ``log_every`` steps) and rolls back - so the weights never take a NaN step. Optimisers without a
  fused kernel (the CPU default) apply the step; the engine reads every step there and undoes it.
* **Precision.** ``"bf16"``: autocast to bfloat16 (same exponent range as fp32, no scaling needed).
  ``"fp16"``: autocast to float16 with dynamic loss scaling (Micikevicius et al. 2018, "Mixed
  Precision Training"): the loss is multiplied by ``scale`` so small gradients do not underflow;
  a step whose gradients overflow is skipped and the scale halved, 2000 clean steps double it.
  ``"fp32"``: no autocast.
* **Compilation.** ``torch.compile`` when asked; if compiling fails the step warns why and runs
  eagerly from then on.
"""
from __future__ import annotations

import contextlib
import warnings
from typing import Any

import torch
from torch import nn

PRECISIONS = ("bf16", "fp16", "fp32")


def resolve_precision(precision: str | None, device: torch.device) -> str:
    """None -> bf16 on GPUs that support it natively, fp16 on older GPUs, fp32 elsewhere."""
    if precision is not None:
        return precision
    if device.type != "cuda":
        return "fp32"
    return "bf16" if torch.cuda.is_bf16_supported(including_emulation=False) else "fp16"


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()


def scalar_loss(out: Any, method: nn.Module) -> torch.Tensor:
    """The ``"loss"`` of a training step's output; a ValueError naming the method otherwise."""
    loss = out.get("loss") if isinstance(out, dict) else None
    if not (torch.is_tensor(loss) and loss.numel() == 1):
        raise ValueError(f"{type(method).__name__}.training_step must return a dict with a scalar "
                         f"'loss' tensor; got {_describe(out)}")
    return loss


class LossScale:
    """Non-finite checks of loss and gradients, plus dynamic loss scaling for fp16. No host syncs."""

    # GradScaler's defaults: start high (2^16) and let overflows find the right scale quickly.
    INIT, GROWTH, BACKOFF, INTERVAL = 2.0 ** 16, 2.0, 0.5, 2000

    def __init__(self, device: torch.device, dynamic: bool) -> None:
        self.dynamic = dynamic
        self.scale = torch.full((), self.INIT if dynamic else 1.0, device=device)
        self._growth = torch.zeros((), dtype=torch.int32, device=device)

    def backward(self, loss: torch.Tensor) -> None:
        (loss * self.scale if self.dynamic else loss).backward()

    def check(self, loss: torch.Tensor, grads: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Unscale ``grads`` in place; return (diverged, skip) as 0-dim float flags on the device.

        ``diverged``: the loss or a gradient is not finite (with fp16 scaling only the loss: an
        overflowing scaled gradient is routine, not divergence). ``skip``: do not apply this update.
        """
        found = torch.zeros((), device=self.scale.device)
        inv_scale = self.scale.double().reciprocal().float()
        by_dtype: dict[torch.dtype, list[torch.Tensor]] = {}
        for g in grads:
            by_dtype.setdefault(g.dtype, []).append(g)
        for group in by_dtype.values():  # grads *= inv_scale; found = 1 if any is NaN/inf
            torch._amp_foreach_non_finite_check_and_unscale_(group, found, inv_scale)
        loss_bad = torch.isfinite(loss.detach()).logical_not().float()
        if not self.dynamic:
            bad = torch.maximum(found, loss_bad)
            return bad, bad
        torch._amp_update_scale_(self.scale, self._growth, found, self.GROWTH, self.BACKOFF,
                                 self.INTERVAL)
        return loss_bad, torch.maximum(found, loss_bad)


class TrainStep:
    """Forward, backward and a guarded optimiser step of ``model`` (the method, maybe DDP-wrapped)."""

    def __init__(self, method: nn.Module, model: nn.Module, optimizer: torch.optim.Optimizer,
                 device: torch.device, precision: str = "fp32", compile: bool = False) -> None:
        self.method, self.model, self.opt = method, model, optimizer
        self.params = [p for g in optimizer.param_groups for p in g["params"]]
        self.autocast = autocast(device, precision)
        self.scaler = LossScale(device, dynamic=precision == "fp16")
        self.fused = bool(optimizer.defaults.get("fused"))
        self.window_bad = torch.zeros((), device=device)  # 1 once a step since the last read was bad
        self.compiled = torch.compile(model) if compile else None
        self._compiled_ran = False

    def __call__(self, x: torch.Tensor, lr: float) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        for g in self.opt.param_groups:
            g["lr"] = lr                      # a Python float: passed to the kernels, never synced
        with self.autocast:
            out = self._forward(x)
        loss = scalar_loss(out, self.method)
        self.opt.zero_grad(set_to_none=True)
        self.scaler.backward(loss)
        bad, skip = self.scaler.check(loss, [p.grad for p in self.params if p.grad is not None])
        self.window_bad = torch.maximum(self.window_bad, bad)
        self._update(torch.maximum(skip, self.window_bad))
        return out, bad

    def new_window(self) -> None:
        """The engine read the flags and everything is consistent: allow updates again."""
        self.window_bad.zero_()

    def _update(self, skip: torch.Tensor) -> None:
        if self.fused:  # the fused kernels skip the update on the device when found_inf != 0
            self.opt.found_inf, self.opt.grad_scale = skip, None
            try:
                self.opt.step()
            finally:
                del self.opt.found_inf, self.opt.grad_scale
        elif self.scaler.dynamic:  # fp16 without a fused kernel: must look (one host sync)
            if not skip.item():
                self.opt.step()
        else:  # applied even if bad: the engine reads this step's flag and rolls it back
            self.opt.step()

    def _forward(self, x: torch.Tensor) -> Any:
        if self.compiled is None:
            return self.model(x)
        try:
            out = self.compiled(x)
        except Exception as err:
            # The first call compiles: any failure there (no triton, an unsupported op, ...) means
            # "run eagerly"; the eager call below re-raises errors that are the method's own.
            # Later calls only recompile, and only compiler errors fall back.
            if self._compiled_ran and not _is_compiler_error(err):
                raise
            first = (str(err).strip().splitlines() or [""])[0][:300]
            warnings.warn(f"torch.compile failed ({type(err).__name__}: {first}); training continues "
                          f"without compilation (eager mode, slower but the same results)",
                          RuntimeWarning, stacklevel=4)
            self.compiled = None
            return self.model(x)
        self._compiled_ran = True
        return out


def _is_compiler_error(err: BaseException) -> bool:
    return type(err).__module__.startswith(("torch._dynamo", "torch._inductor"))


def _describe(out: Any) -> str:
    if isinstance(out, dict):
        return "{" + ", ".join(f"{k!r}: {tuple(v.shape) if torch.is_tensor(v) else type(v).__name__}"
                               for k, v in out.items()) + "}"
    return type(out).__name__
