"""Time every embedded dataset's load with default options (and a few larger variants).

    python benchmarks/data_load_times.py [--repeat 3] [--threads 2]

Prints a table: dataset, options, shape, dtype, best wall time over ``--repeat`` loads (the first
call also pays one-off imports, e.g. scikit-learn, reported separately as "first").
Target: every embedded dataset loads in well under 10 s on a 2-core CPU.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without install
import sslkit  # noqa: E402

CASES = [
    ("digits", "train", {}), ("digits", "train", {"size": 32}),
    ("shapes", "train", {}), ("shapes", "test", {}), ("shapes", "train", {"n": 20000}),
    ("photos", "train", {}), ("photos", "train", {"size": 224}),
    ("photos", "train", {"crops": 2000, "crop_size": 64}),
    ("corpus", "train", {}), ("corpus", "train", {"level": "char"}),
    ("waves", "train", {}), ("waves", "train", {"n": 20000, "length": 256}),
    ("moving_digits", "train", {}), ("moving_digits", "train", {"digits_per_clip": 2}),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (CI has 2 cores)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    sslkit.data.names()  # import every dataset module once
    print(f"{'dataset':<14} {'split':<6} {'options':<34} {'shape':<22} {'dtype':<8} "
          f"{'first s':>8} {'best s':>7}")
    for name, split, opts in CASES:
        times = []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            ds = sslkit.data.load(name, split, **opts)
            times.append(time.perf_counter() - t0)
        print(f"{name:<14} {split:<6} {str(opts):<34} {str(tuple(ds.x.shape)):<22} "
              f"{str(ds.x.dtype).replace('torch.', ''):<8} {times[0]:8.3f} {min(times):7.3f}")


if __name__ == "__main__":
    main()
