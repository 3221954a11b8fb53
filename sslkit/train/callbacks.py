"""Hooks into the training loop: live plots, kNN monitoring, collapse warnings.

    history = sslkit.fit(method, ds, minutes=2,
                         callbacks=[KNNMonitor(ds, test, every=200), LivePlot(every=25)])

A callback subclasses :class:`Callback` and overrides any of ``on_train_start``, ``on_step_end``,
``on_train_end``; each gets the :class:`TrainState`. Callbacks run on every process of a DDP run
(so that they all stop together); plotting and warnings happen on rank 0 only (``state.is_main``).
Setting ``state.stop = True`` ends training after the current step.
"""
from __future__ import annotations

import io
import math
import warnings
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from sslkit import checks
from sslkit.train.history import History


@dataclass
class TrainState:
    """What callbacks see. ``step`` = steps done so far; ``total_steps`` = current estimate.

    ``history`` and ``elapsed`` are as of the last read (every ``fit(log_every=...)`` steps: every
    step on the CPU); between reads the logged numbers are still on the device.
    """

    method: nn.Module
    step: int
    total_steps: int
    epoch: int
    history: History
    data: Any
    optimizer: torch.optim.Optimizer
    elapsed: float
    is_main: bool = True
    stop: bool = False


class Callback:
    """Base class; every hook does nothing by default."""

    def on_train_start(self, state: TrainState) -> None:
        pass

    def on_step_end(self, state: TrainState) -> None:
        pass

    def on_train_end(self, state: TrainState) -> None:
        pass

    def outputs(self) -> list[str]:
        """Files this callback writes; ``fit`` checks they can be written before the first step."""
        return []


class CollapseWarning(UserWarning):
    """The representation is collapsing (all samples map to (nearly) the same point or line)."""


class CollapseMonitor(Callback):
    """Warn when the embeddings of a fixed batch collapse (SimSiam, Chen & He 2021, Sec. 4.1).

    At the start and every ``every`` steps the method embeds the same ``n`` samples; two label-free
    statistics of the L2-normalised features are computed (``sslkit.eval``):

    * ``feature_std * sqrt(D)``: ~1 for features spread over the sphere, 0 for a constant output.
      Below ``std_threshold`` = 0.1 the samples differ 10x less than isotropic features would
      (typical cosine similarity above 0.99): almost no information is left to probe.
    * ``effective_rank`` (RankMe): 1 when all features lie on one line. Below ``rank_threshold`` = 1.5
      the features use essentially a single direction (dimensional collapse).

    Collapse is something training *does*, so a statistic must also have fallen below ``drop`` = half
    of its value at the start: some architectures start out degenerate (a random ViT maps all
    images to nearly the same vector: std * sqrt(D) ~ 0.05, rank ~ 2 on ``digits``) and the warning
    must not blame the method for that. A healthy random ConvNet starts around 0.2 and rank 30;
    a collapsing SimSiam without stop-gradient reaches ~0.001 and rank ~1 within a few hundred steps.
    Warns once per run with a :class:`CollapseWarning`; every check goes into ``history.evals``.
    """

    def __init__(self, every: int = 100, n: int = 256, std_threshold: float = 0.1,
                 rank_threshold: float = 1.5, drop: float = 0.5) -> None:
        self.every = checks.integer("every", every, min=1)
        self.n = checks.integer("n", n, min=2)
        self.std_threshold = checks.number("std_threshold", std_threshold, min=0)
        self.rank_threshold = checks.number("rank_threshold", rank_threshold, min=1)
        self.drop = checks.number("drop", drop, min=0, max=1)
        self._x: torch.Tensor | None = None
        self._start = (math.inf, math.inf)
        self._warned = False

    def on_train_start(self, state: TrainState) -> None:
        data = state.data
        g = torch.Generator().manual_seed(0)  # the same samples every check and every run
        idx = torch.randperm(len(data), generator=g)[: min(self.n, len(data))]
        self._x = data.batch(idx.to(data.device))
        self._warned = False
        self._start = self._record(state)

    def check(self, method: nn.Module) -> tuple[float, float]:
        """(std * sqrt(D), effective rank) of the fixed batch's normalised embeddings."""
        from sslkit.eval import effective_rank, extract_features, feature_std

        x = self._x
        feats, _ = extract_features(method, (x, torch.zeros(len(x), dtype=torch.long, device=x.device)),
                                    batch_size=len(x))  # (n, D), eval mode, no grad
        return feature_std(feats) * math.sqrt(feats.shape[1]), effective_rank(feats)

    def _record(self, state: TrainState) -> tuple[float, float]:
        std, rank = self.check(state.method)
        state.history.evals.append({"step": state.step, "feature_std": std, "effective_rank": rank})
        return std, rank

    def collapsed(self, std: float, rank: float) -> bool:
        std0, rank0 = self._start
        return ((std < self.std_threshold and std < self.drop * std0)
                or (rank < self.rank_threshold and rank < self.drop * rank0))

    def on_step_end(self, state: TrainState) -> None:
        if self._x is None or state.step % self.every:
            return
        std, rank = self._record(state)
        if not self._warned and self.collapsed(std, rank):
            self._warned = True
            if state.is_main:
                warnings.warn(f"representation collapse at step {state.step}: normalised feature std "
                              f"* sqrt(D) = {std:.3f} (healthy ~1, threshold {self.std_threshold}, "
                              f"{self._start[0]:.3f} at the start), effective rank = {rank:.2f} "
                              f"(threshold {self.rank_threshold}, {self._start[1]:.2f} at the start). "
                              f"The features carry little information; check the loss (stop-gradient, "
                              f"predictor, negatives), lower the learning rate or strengthen the "
                              f"augmentations.", CollapseWarning, stacklevel=2)


class KNNMonitor(Callback):
    """kNN accuracy of the current features every ``every`` steps and at the end (Wu et al. 2018).

    Features of ``train_data`` (the labelled memory bank) and ``test_data`` come from
    ``sslkit.eval.extract_features``; accuracy from ``sslkit.eval.knn_accuracy`` with ``k``
    neighbours. Results go to ``history.evals`` as ``{"step": s, "knn": acc}``.
    """

    def __init__(self, train_data: Any, test_data: Any, every: int = 200, k: int = 20,
                 batch_size: int = 512) -> None:
        for name, d in (("train_data", train_data), ("test_data", test_data)):
            if not (hasattr(d, "batch") and hasattr(d, "labels")):
                raise ValueError(f"{name} must be a sslkit.data.Dataset; got {type(d).__name__}")
            if bool((d.labels < 0).any()):
                raise ValueError(f"{name} ({d.name}/{d.split}) has unlabelled samples (label -1); "
                                 f"kNN needs labels - use a labelled split")
        self.train_data, self.test_data = train_data, test_data
        self.every = checks.integer("every", every, min=1)
        self.k = checks.integer("k", k, min=1)
        self.batch_size = checks.integer("batch_size", batch_size, min=1)
        self._last = -1

    def on_train_start(self, state: TrainState) -> None:
        device = state.data.device  # evaluate where the model trains; move the data once
        self.train_data, self.test_data = self.train_data.to(device), self.test_data.to(device)
        self._last = -1

    def evaluate(self, method: nn.Module) -> float:
        from sslkit.eval import extract_features, knn_accuracy

        tr_f, tr_y = extract_features(method, self.train_data, batch_size=self.batch_size)
        te_f, te_y = extract_features(method, self.test_data, batch_size=self.batch_size)
        return knn_accuracy(tr_f, tr_y, te_f, te_y, k=self.k)

    def _record(self, state: TrainState) -> None:
        acc = self.evaluate(state.method)
        state.history.evals.append({"step": state.step, "knn": acc})
        self._last = state.step

    def on_step_end(self, state: TrainState) -> None:
        if state.step % self.every == 0:
            self._record(state)

    def on_train_end(self, state: TrainState) -> None:
        # A final score unless just measured - skipped after Ctrl-C, where the user wants control back.
        if state.step > 0 and state.step != self._last and not state.history.interrupted:
            self._record(state)


class LivePlot(Callback):
    """Loss curve (and kNN accuracy, if a :class:`KNNMonitor` records it) updated in place in Jupyter.

    Redraws every ``every`` steps through an IPython display handle; outside a notebook (scripts,
    CLI, headless CI) it draws nothing and never fails. With ``path`` the final figure is also
    saved as an image file (works headless).
    """

    def __init__(self, every: int = 25, path: str | None = None, smooth: float = 0.9) -> None:
        self.every = checks.integer("every", every, min=1)
        self.smooth = checks.number("smooth", smooth, min=0, max=1, max_open=True)
        self.path = path
        self._handle = None
        self._active = False

    @staticmethod
    def _in_notebook() -> bool:
        try:
            from IPython import get_ipython
        except ImportError:
            return False
        shell = get_ipython()
        return shell is not None and hasattr(shell, "kernel")  # a Jupyter kernel, not a terminal

    def figure(self, history: History):
        """A matplotlib Figure of ``history`` (not registered with pyplot, so nothing shows twice)."""
        from matplotlib.figure import Figure

        knn = [(e["step"], e["knn"]) for e in history.evals if "knn" in e]
        fig = Figure(figsize=(9 if knn else 5, 3), layout="constrained")
        ax = fig.add_subplot(1, 2 if knn else 1, 1)
        ax.plot(history.step, history.loss, color="0.75", lw=0.8, label="loss")
        if history.loss:
            ema, smooth = history.loss[0], []
            for v in history.loss:  # exponential moving average: the trend under the step noise
                ema = self.smooth * ema + (1 - self.smooth) * v
                smooth.append(ema)
            ax.plot(history.step, smooth, color="C0", lw=1.5, label="smoothed")
        ax.set_xlabel("step")
        ax.set_ylabel("loss")
        ax.set_title(f"loss {history.last_loss:.4g}" if history.loss else "loss")
        if knn:
            ax2 = fig.add_subplot(1, 2, 2)
            ax2.plot(*zip(*knn), marker="o", color="C1")
            ax2.set_xlabel("step")
            ax2.set_ylabel("kNN accuracy")
            ax2.set_title(f"kNN {knn[-1][1]:.3f}")
        return fig

    def _draw(self, history: History) -> None:
        from IPython.display import Image, display

        buf = io.BytesIO()
        self.figure(history).savefig(buf, format="png", dpi=80)
        img = Image(data=buf.getvalue(), format="png")
        if self._handle is None:
            self._handle = display(img, display_id=True)
        else:
            self._handle.update(img)

    def on_train_start(self, state: TrainState) -> None:
        self._handle = None
        self._active = state.is_main and self._in_notebook()

    def on_step_end(self, state: TrainState) -> None:
        if self._active and state.step % self.every == 0:
            self._draw(state.history)

    def on_train_end(self, state: TrainState) -> None:
        if not state.is_main:
            return
        if self._active:
            self._draw(state.history)
        if self.path is not None:
            try:
                self.figure(state.history).savefig(self.path, dpi=100)
            except OSError as err:  # the run's results matter more than its plot
                warnings.warn(f"LivePlot: nothing was written to {self.path!r} ({type(err).__name__}: "
                              f"{err})", RuntimeWarning, stacklevel=2)

    def outputs(self) -> list[str]:
        return [] if self.path is None else [self.path]
