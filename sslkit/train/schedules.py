"""Learning-rate schedule: linear warm-up then cosine decay, evaluated per iteration.

Goyal et al. 2017 ("Accurate, Large Minibatch SGD") for the warm-up and the linear scaling of the
learning rate with batch size; Loshchilov & Hutter 2017 (SGDR) for the cosine decay. Used by SimCLR,
BYOL, DINO, MAE alike.

The schedule is a pure function of ``(step, total_steps)``. With a time budget (``fit(minutes=...)``)
the total is not known in advance: the engine re-estimates it after every step from the measured
mean step time (:class:`StepBudget`), and the schedule follows that estimate.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from sslkit import checks


@dataclass
class WarmupCosine:
    """lr(step) = base_lr * factor(step), factor rising linearly to 1 then following a half cosine.

    Args:
        base_lr: peak learning rate (reached at the end of warm-up).
        warmup: fraction of the total steps spent warming up, in [0, 1).
        final_ratio: the lr at the last step as a fraction of ``base_lr``.
    """

    base_lr: float
    # 5% warm-up: long enough for Adam's second-moment estimates to settle on a fresh projector.
    warmup: float = 0.05
    # Decay to 0.1% of the peak rather than 0: the last steps still move, nothing is wasted.
    final_ratio: float = 1e-3

    def __post_init__(self) -> None:
        checks.number("lr", self.base_lr, min=0.0)
        checks.number("warmup", self.warmup, min=0.0, max=1.0, max_open=True)
        checks.number("final_ratio", self.final_ratio, min=0.0, max=1.0)

    def factor(self, step: int, total_steps: int) -> float:
        """Multiplier of ``base_lr`` for 0-based ``step`` of ``total_steps``."""
        total = max(1, int(total_steps))
        warm = int(round(self.warmup * total))
        if step < warm:
            return (step + 1) / (warm + 1)  # never exactly 0: step 0 already learns a little
        progress = min(1.0, (step - warm) / max(1, total - warm))
        cosine = 0.5 * (1.0 + math.cos(math.pi * progress))
        return self.final_ratio + (1.0 - self.final_ratio) * cosine

    def lr(self, step: int, total_steps: int) -> float:
        return self.base_lr * self.factor(step, total_steps)

    def state_dict(self) -> dict:
        return asdict(self)

    def load_state_dict(self, state: dict) -> None:
        for key in ("base_lr", "warmup", "final_ratio"):
            setattr(self, key, float(state[key]))


class StepBudget:
    """Estimates how many steps fit in the stopping rules given (steps, epochs, minutes).

    ``total()`` is the smallest of: ``steps``; ``epochs * steps_per_epoch``; for a time budget,
    ``done + remaining_seconds / seconds_per_step``, where seconds per step is wall-clock time
    (callbacks such as kNN evaluation included) since the first ``skip`` steps, which include cuDNN
    autotuning / ``torch.compile`` and are left out. Until then the time rule contributes no
    estimate and a placeholder is used.
    """

    # Placeholder total while only a time budget is known and no step was timed yet: makes the
    # warm-up of the very first steps tiny (a safe choice) until a real estimate exists.
    PLACEHOLDER = 10_000

    def __init__(self, steps: int | None, epochs: int | None, minutes: float | None,
                 steps_per_epoch: int, skip: int = 2) -> None:
        self.steps, self.epochs, self.minutes = steps, epochs, minutes
        self.steps_per_epoch = steps_per_epoch
        self.skip = skip
        self._ref: tuple[int, float] | None = None   # (steps done, elapsed) where timing starts
        self._per_step: float | None = None

    def record(self, done: int, elapsed: float) -> None:
        """Report that ``done`` steps are finished after ``elapsed`` seconds."""
        if self.skip > 0 or self._ref is None:
            self.skip = max(0, self.skip - 1)
            self._ref = (done, elapsed)
            return
        ref_done, ref_elapsed = self._ref
        if done > ref_done:
            self._per_step = (elapsed - ref_elapsed) / (done - ref_done)

    def total(self, done: int, elapsed: float) -> int:
        caps = []
        if self.steps is not None:
            caps.append(self.steps)
        if self.epochs is not None:
            caps.append(self.epochs * self.steps_per_epoch)
        if self.minutes is not None and self._per_step is not None:
            remaining = max(0.0, self.minutes * 60.0 - elapsed)
            caps.append(done + int(remaining / max(self._per_step, 1e-9)))
        if not caps:
            return max(done + 1, self.PLACEHOLDER)
        return max(done, min(caps), 1)

    def finished(self, done: int, epoch: int, elapsed: float) -> bool:
        """True once any stopping rule is reached (the first one wins)."""
        return ((self.steps is not None and done >= self.steps)
                or (self.epochs is not None and epoch >= self.epochs)
                or (self.minutes is not None and elapsed >= self.minutes * 60.0))
