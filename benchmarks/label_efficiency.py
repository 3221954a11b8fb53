"""Label-efficiency benchmark: SSL features vs raw pixels / random init / supervised, per label budget.

    python benchmarks/label_efficiency.py                       # digits (60 s) and shapes (7 min)
    python benchmarks/label_efficiency.py --data shapes --minutes 3 --probes linear knn --supervised

For each dataset: pre-train ``--method`` with ``sslkit.fit`` under a time budget, then evaluate raw
pixels, the random-init ConvNet and the pre-trained ConvNet with each probe at 1/5/10/all labels per
class (class-stratified subsets, mean ± std over seeds) - optionally also the same ConvNet trained
from scratch on only those labels (``--supervised``). Prints one table per dataset and probe, the
machine, and the timings; results are recorded in benchmarks/RESULTS.md.
"""
from __future__ import annotations

import argparse
import os
import platform
import time

import torch

import sslkit

DEFAULT_MINUTES = {"digits": 1.0, "shapes": 7.0}  # digits: the acceptance budget; shapes: 16x the pixels
# Batch, lr, ConvNet widths and views per dataset: sslkit.demo.SETTINGS (shared with `sslkit demo`).


def run(data: str, method_name: str, minutes: float, probes: list[str], seeds: int, supervised: bool,
        batch_size: int | None, device: torch.device) -> None:
    train = sslkit.data.load(data, "train")
    test = sslkit.data.load(data, "test")
    settings = sslkit.demo.SETTINGS.get(data, sslkit.demo.PretrainSettings())
    batch_size = batch_size or settings.batch_size
    lr = None if settings.lr is None else settings.lr * batch_size / settings.batch_size
    torch.manual_seed(0)
    method = sslkit.demo.build_method(method_name, train, settings)
    print(f"\nsettings for {data}: {settings}", flush=True)
    t0 = time.time()
    history = sslkit.fit(method, train, minutes=minutes, batch_size=batch_size, lr=lr,
                         device=device, progress=False)
    fit_s = time.time() - t0
    print(f"\n## {data}: {method_name}, {len(history)} steps of batch {batch_size} in {fit_s:.0f} s "
          f"(loss {history.loss[0]:.3f} -> {history.loss[-1]:.3f})", flush=True)
    for i, probe in enumerate(probes):
        baselines = ("raw pixels", "random init") + (("supervised",) if supervised and i == 0 else ())
        t0 = time.time()
        res = sslkit.eval.label_efficiency({method_name: method}, train.to(device), test.to(device),
                                           seeds=range(seeds), probe=probe, baselines=baselines)
        print(res.table())
        gaps = [100 * (res.mean(method_name, b) - res.mean("raw pixels", b)) for b in res.budgets]
        print("SSL - raw pixels (points): " + ", ".join(
            f"{'all' if b is None else b}: {g:+.1f}" for b, g in zip(res.budgets, gaps)))
        print(f"(evaluation {time.time() - t0:.0f} s)", flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", nargs="+", default=["digits", "shapes"])
    p.add_argument("--method", default="simclr")
    p.add_argument("--minutes", type=float, default=None, help="per dataset (default: 1 digits, 7 shapes)")
    p.add_argument("--probes", nargs="+", default=["linear", "knn"], choices=["linear", "knn"])
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=None, help="default: 256 digits, 128 shapes")
    p.add_argument("--supervised", action="store_true", help="add the supervised-from-scratch row")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = sslkit.device()
    gpu = torch.cuda.get_device_name() if device.type == "cuda" else "no GPU"
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"{torch.get_num_threads()} torch threads, {gpu}; load average "
          f"{os.getloadavg()[0]:.1f}; torch {torch.__version__}; device {device}")
    for data in args.data:
        minutes = args.minutes if args.minutes is not None else DEFAULT_MINUTES.get(data, 1.0)
        run(data, args.method, minutes, args.probes, args.seeds, args.supervised, args.batch_size, device)


if __name__ == "__main__":
    main()
