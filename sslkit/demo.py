"""``sslkit demo``: self-supervised pre-training pays off when labels are scarce - in three minutes.

    sslkit demo                      # digits, SimCLR, 60 s of pre-training, 5 seeds
    sslkit demo --data shapes --minutes 3
    sslkit demo --quick              # a few seconds, 2 seeds (smoke test)

What it does:
1. pre-trains SimCLR (Chen et al. 2020) on the *unlabelled* training images with ``sslkit.fit``
   under a time budget;
2. evaluates three encoders with the same protocol - raw pixels, the same ConvNet with random
   weights (its BatchNorm statistics recalibrated on the unlabelled training images, so the
   baseline is fair; see ``sslkit.eval.baselines``), and the pre-trained ConvNet - at 1, 5, 10 labels per class and with all labels: a linear
   probe (L-BFGS logistic regression on standardised frozen features) trained on a class-stratified
   labelled subset, scored on the whole test split; mean ± std over 5 seeds (subsets);
3. prints the table and saves a plot under ``runs/demo/``.

Why the linear probe for every row: with all 1,438 labels, raw 8x8 digits are already ~98% with a
kNN (nearest neighbour in pixel space is strong on this tiny, centred dataset) but ~96% with a
linear classifier; the linear probe asks the question SSL is about - are the classes *linearly*
separable in feature space - and is the protocol of the SimCLR/BYOL papers.

Budget: on the CPU the default is 60 s of pre-training at batch 256 (the issue's acceptance setting:
2 cores, <= 3 min end to end). On a GPU the batch is doubled to 512 (the learning rate follows by
the linear scaling rule) and the same minute buys thousands of steps instead of hundreds.
Per-dataset settings (batch, lr, ConvNet widths, views) are in ``SETTINGS``; ``shapes`` needs
colour-randomising views and several minutes (``--minutes 7``; see benchmarks/RESULTS.md).
"""
from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import torch

import sslkit
from sslkit import checks
from sslkit.eval.label_efficiency import PROBES

# Default time budget of the pre-training: 60 s is the acceptance setting (2 CPU cores).
DEFAULT_MINUTES = 1.0
QUICK_MINUTES = 0.03  # --quick: ~2 s of pre-training, enough to exercise every part


@dataclass(frozen=True)
class PretrainSettings:
    """Per-dataset pre-training settings (found by the experiments in benchmarks/RESULTS.md)."""

    batch_size: int = 256                 # CPU batch; doubled on a GPU
    lr: float | None = None               # None: fit's default (method lr x batch / 256)
    widths: tuple[int, ...] | None = None  # ConvNet widths; None: the default backbone for the data
    views: dict[str, Any] | None = None   # changes to SimCLR's ViewRecipe; None: the method's views


# shapes: the class is the shape, while colour and background texture are nuisances that SimCLR's
# default views leave as shortcuts - so the views randomise colour fully (hue 0.5 = any hue, jitter
# always, grayscale half the time); crops keep >= 25% of the image so the shape stays in view; no
# blur (it erases 32 px edges). A 16-32-64 ConvNet gets ~4x the steps of the default 32-64-128 in the
# same CPU time, and lr 2e-3 (4x fit's default at batch 128) learns more in a few hundred steps.
SETTINGS: dict[str, PretrainSettings] = {
    "digits": PretrainSettings(),
    "shapes": PretrainSettings(batch_size=128, lr=2e-3, widths=(16, 32, 64),
                               views=dict(scale=(0.25, 1.0), hue=0.5, jitter_p=1.0, gray_p=0.5,
                                          blur_p=0.0)),
}


def build_method(name: str, train: Any, settings: PretrainSettings) -> Any:
    """``sslkit.create(name, data=train)`` with the dataset's backbone widths and views."""
    backbone = None
    if settings.widths is not None:
        backbone = sslkit.backbones.create("convnet", in_channels=train.in_channels,
                                           widths=settings.widths)
    config = {}
    if settings.views is not None:
        config["views"] = sslkit.pretext.recipes.SIMCLR.replace(**settings.views)
    return sslkit.create(name, data=train, backbone=backbone, **config)


@dataclass
class DemoConfig:
    data: str = "digits"
    method: str = "simclr"
    minutes: float | None = None     # None: DEFAULT_MINUTES (QUICK_MINUTES with quick)
    batch_size: int | None = None    # None: SETTINGS[data].batch_size on CPU, twice that on a GPU
    seeds: int | None = None         # None: 5 (2 with quick)
    probe: str = "linear"
    labels_per_class: tuple[int | None, ...] = (1, 5, 10, None)
    runs_dir: str = "runs"
    device: str | None = None
    quick: bool = False
    seed: int = 0
    progress: bool = True


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sslkit demo", description=__doc__.split("\n")[0].strip("`: "))
    p.add_argument("--data", default="digits", help="image dataset (default: digits; try shapes)")
    p.add_argument("--method", default="simclr", help="SSL method (simclr, byol, vicreg, barlow_twins, ...)")
    p.add_argument("--minutes", type=float, default=None,
                   help=f"pre-training time budget (default {DEFAULT_MINUTES:g}; "
                        f"{QUICK_MINUTES:g} with --quick)")
    p.add_argument("--batch-size", type=int, default=None,
                   help="pre-training batch (default: 256 digits / 128 shapes on CPU, x2 on a GPU)")
    p.add_argument("--seeds", type=int, default=None, help="labelled subsets per budget (default 5)")
    p.add_argument("--probe", default="linear", help="linear (default) or knn - the same for every row")
    p.add_argument("--runs-dir", default="runs", help="where runs/demo/label_efficiency.png goes")
    p.add_argument("--device", default=None, help="cpu, cuda, mps (default: sslkit.device())")
    p.add_argument("--quick", action="store_true", help="a few seconds of training, 2 seeds")
    p.add_argument("--seed", type=int, default=0, help="seed of the model init and training")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    return p


def run(config: DemoConfig) -> tuple[Any, Path]:
    """Pre-train, evaluate, print the table; return (LabelEfficiencyResult, plot path)."""
    start = time.time()
    dev = sslkit.device(config.device)
    gpu = dev.type == "cuda"
    minutes = config.minutes if config.minutes is not None else (
        QUICK_MINUTES if config.quick else DEFAULT_MINUTES)
    minutes = checks.number("minutes", minutes, min=0, min_open=True)
    settings = SETTINGS.get(config.data, PretrainSettings())
    scale = 2 if gpu else 1  # a GPU gets twice the batch (and lr, when set explicitly)
    batch_size = checks.integer("batch_size", config.batch_size if config.batch_size is not None
                                else scale * settings.batch_size, min=2)
    lr = None if settings.lr is None else settings.lr * batch_size / settings.batch_size
    n_seeds = checks.integer("seeds", config.seeds if config.seeds is not None
                             else (2 if config.quick else 5), min=1)
    checks.choice("probe", config.probe, PROBES)

    train = sslkit.data.load(config.data, "train", seed=config.seed)
    test = sslkit.data.load(config.data, "test", seed=config.seed)
    if train.kind != "image":
        raise ValueError(f"data={config.data!r} holds {train.kind} data; the demo needs images")
    batch_size = min(batch_size, len(train))
    print(f"sslkit demo: {config.method} on {config.data} ({len(train)} train / {len(test)} test "
          f"images {tuple(train.sample_shape)}, {train.num_classes} classes) on {dev}; "
          f"pre-training {minutes * 60:.0f} s at batch {batch_size} "
          f"({torch.get_num_threads()} CPU threads)", flush=True)

    torch.manual_seed(config.seed)  # model initialisation
    method = build_method(config.method, train, settings)
    t0 = time.time()
    history = sslkit.fit(method, train, minutes=minutes, batch_size=batch_size, lr=lr,
                         seed=config.seed, device=dev, progress=config.progress)
    fit_s = time.time() - t0
    print(f"pre-trained {len(history)} steps in {fit_s:.1f} s (loss {history.loss[0]:.3f} -> "
          f"{history.loss[-1]:.3f}); evaluating with a {config.probe} probe on "
          f"{n_seeds} seeds ...", flush=True)

    t0 = time.time()
    name = f"{config.method} ({fit_s:.0f} s pre-training)"
    result = sslkit.eval.label_efficiency(
        {name: method}, train.to(dev), test.to(dev), labels_per_class=config.labels_per_class,
        seeds=range(n_seeds), probe=config.probe, baselines=("raw pixels", "random init"))
    eval_s = time.time() - t0
    print()
    print(result.table())
    wins = [b for b in config.labels_per_class
            if result.mean(name, b) > result.mean("raw pixels", b)]
    first = config.labels_per_class[0]
    gain = 100 * (result.mean(name, first) - result.mean("raw pixels", first))
    print(f"\nSSL beats raw pixels at {len(wins)} of {len(config.labels_per_class)} label budgets "
          f"({gain:+.1f} points with {_budget(first)} label(s) per class)")
    path = result.plot(Path(config.runs_dir) / "demo" / "label_efficiency.png")
    print(f"plot saved to {path}")
    print(f"time: pre-training {fit_s:.1f} s, evaluation {eval_s:.1f} s, total {time.time() - start:.1f} s")
    return result, path


def _budget(b: int | None) -> str:
    return "all" if b is None else str(b)


def main(argv: Sequence[str] | None = None, **overrides: Any) -> int:
    """Entry point of ``sslkit demo``: ``main(["--quick"])`` or ``main(quick=True, runs_dir=...)``.

    Keyword ``overrides`` are :class:`DemoConfig` fields and win over ``argv``.
    """
    args = vars(build_parser().parse_args([] if argv is None else list(argv)))
    allowed = [f.name for f in fields(DemoConfig)]
    for key in overrides:
        checks.choice("override", key, allowed)
    run(DemoConfig(**{**args, **overrides}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(__import__("sys").argv[1:]))
