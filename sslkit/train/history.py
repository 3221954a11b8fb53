"""What a training run records: one entry per optimiser step, plus evaluation records."""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, fields
from typing import Any


@dataclass
class History:
    """Per-step logs of a run (plain Python, so it goes into checkpoints and JSON as is).

    Attributes:
        step, epoch, loss, lr, time, throughput: one entry per optimiser step; ``step`` is 1-based
            (the number of steps done), ``time`` the seconds since training started (summed over
            resumed runs), ``throughput`` samples per second of that step (global batch).
        terms: the method's other logged values (e.g. ``"pos_sim"``), name -> one value per step.
        evals: evaluation records, e.g. ``{"step": 200, "knn": 0.81}`` from :class:`KNNMonitor`.
        interrupted: True when the run was stopped with KeyboardInterrupt (Ctrl-C, Jupyter stop).
        skipped: steps whose loss or gradients were not finite and that ``fit(on_nan="skip")``
            undid (they have no entry in the per-step lists: no update was applied).
    """

    step: list[int] = field(default_factory=list)
    epoch: list[int] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    time: list[float] = field(default_factory=list)
    throughput: list[float] = field(default_factory=list)
    terms: dict[str, list[float]] = field(default_factory=dict)
    evals: list[dict[str, float]] = field(default_factory=list)
    interrupted: bool = False
    skipped: list[int] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.step)

    def append(self, *, step: int, epoch: int, loss: float, lr: float, time: float,
               throughput: float, terms: dict[str, float] | None = None) -> None:
        n = len(self.step)
        self.step.append(int(step))
        self.epoch.append(int(epoch))
        self.loss.append(float(loss))
        self.lr.append(float(lr))
        self.time.append(float(time))
        self.throughput.append(float(throughput))
        for name, value in (terms or {}).items():
            # A term first logged late is padded with NaN so every list stays aligned with `step`.
            self.terms.setdefault(name, [math.nan] * n).append(float(value))
        for name, values in self.terms.items():
            if len(values) < n + 1:
                values.append(math.nan)

    def rewind(self, step: int) -> None:
        """Forget everything recorded after ``step`` (entries, evaluations, skipped steps)."""
        keep = sum(1 for s in self.step if s <= step)
        for name in ("step", "epoch", "loss", "lr", "time", "throughput"):
            del getattr(self, name)[keep:]
        for values in self.terms.values():
            del values[keep:]
        self.evals[:] = [e for e in self.evals if not (isinstance(e.get("step"), (int, float))
                                                        and e["step"] > step)]
        self.skipped[:] = [s for s in self.skipped if s <= step]

    @property
    def last_loss(self) -> float:
        return self.loss[-1] if self.loss else math.nan

    @property
    def elapsed(self) -> float:
        return self.time[-1] if self.time else 0.0

    def to_dict(self) -> dict[str, Any]:
        """Plain Python (lists, dicts, floats) - safe for ``torch.load(weights_only=True)`` and JSON."""
        return {f.name: _plain(getattr(self, f.name)) for f in fields(self)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> History:
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown History fields {sorted(unknown)}; allowed: {sorted(known)}")
        return cls(**_plain(d))

    def save_json(self, path: str) -> None:
        # Padded terms hold NaN; the json module writes and reads it back as `NaN`.
        with open(path, "w") as f:
            json.dump(self.to_dict(), f)

    @classmethod
    def load_json(cls, path: str) -> History:
        with open(path) as f:
            return cls.from_dict(json.load(f))


def _plain(value: Any) -> Any:
    """Deep copy into lists/dicts/scalars (no aliasing between a History and its dict)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
