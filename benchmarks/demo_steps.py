"""How many pre-training steps ``sslkit demo`` gets in its time budget, for two versions of the kit.

    git archive main sslkit | tar -x -C /tmp/before      # the version to compare against
    python benchmarks/demo_steps.py --before /tmp/before  # this tree vs /tmp/before, demo defaults

Runs exactly the demo's pre-training (``sslkit.demo.build_method`` + ``sslkit.fit`` with the demo's
data, method, batch, lr and budget) in a fresh process per version, the versions alternating
(``--repeats`` runs each again in the other order), and prints steps, steps/s and CPU seconds per
step (user + system: what the step costs, whatever else the machine runs) for each, then the ratio.
The evaluation part of the demo is not run: it does not depend on the training engine.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

WORKER = """
import json, os, sys, time, torch, sslkit
from sslkit import demo
a = json.loads(sys.argv[1])
if a["threads"]:
    torch.set_num_threads(a["threads"])
train = sslkit.data.load(a["data"], "train", seed=0)
s = demo.SETTINGS.get(a["data"], demo.PretrainSettings())
torch.manual_seed(0)
method = demo.build_method(a["method"], train, s)
c0, t0, load0 = os.times(), time.perf_counter(), os.getloadavg()[0]
h = sslkit.fit(method, train, minutes=a["minutes"], batch_size=s.batch_size, lr=s.lr, seed=0,
               device="cpu", progress=False)
wall, c1 = time.perf_counter() - t0, os.times()
cpu = c1.user + c1.system - c0.user - c0.system
print(json.dumps({"file": sslkit.__file__, "steps": len(h), "wall": wall, "cpu": cpu,
                  "load": [load0, os.getloadavg()[0]], "loss": [h.loss[0], h.loss[-1]]}))
"""


def spawn(tree: str, a: dict) -> dict:
    env = {**os.environ, "PYTHONPATH": tree}
    out = subprocess.run([sys.executable, "-c", WORKER, json.dumps(a)], env=env, cwd=tree,
                         capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(f"the demo's pre-training failed in {tree}:\n{out.stderr[-3000:]}")
    r = json.loads(out.stdout.strip().splitlines()[-1])
    if not r["file"].startswith(os.path.abspath(tree)):
        raise SystemExit(f"imported {r['file']}, not the kit in {tree}")
    return r


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--before", required=True, help="a directory holding the other version's sslkit/")
    p.add_argument("--data", default="digits")
    p.add_argument("--method", default="simclr")
    p.add_argument("--minutes", type=float, default=None, help="default: the demo's (DEFAULT_MINUTES)")
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: PyTorch's default)")
    args = p.parse_args()
    sys.path.insert(0, ROOT)
    from sslkit import demo
    a = {"data": args.data, "method": args.method, "threads": args.threads,
         "minutes": args.minutes if args.minutes is not None else demo.DEFAULT_MINUTES}
    trees = {"this tree": ROOT, "before": os.path.abspath(args.before)}
    runs: dict[str, list[dict]] = {k: [] for k in trees}
    for rep in range(args.repeats):
        for name in (("this tree", "before") if rep % 2 == 0 else ("before", "this tree")):
            runs[name].append(spawn(trees[name], a))
    loads = [x for v in runs.values() for r in v for x in r["load"]]
    print(f"sslkit demo pre-training: {args.method} on {args.data}, {a['minutes'] * 60:.0f} s; load "
          f"average {min(loads):.1f}-{max(loads):.1f} on {os.cpu_count()} cores; medians of "
          f"{args.repeats} run(s)")
    print(f"{'version':<12}{'steps':>7}{'steps/s':>9}{'cpu-s/step':>12}  loss first -> last")
    med = {}
    for name, v in runs.items():
        med[name] = {k: statistics.median(f(r) for r in v) for k, f in
                     (("steps", lambda r: r["steps"]), ("steps_s", lambda r: r["steps"] / r["wall"]),
                      ("cpu_step", lambda r: r["cpu"] / max(r["steps"], 1)))}
        m, last = med[name], v[-1]["loss"]
        print(f"{name:<12}{m['steps']:>7.0f}{m['steps_s']:>9.2f}{m['cpu_step']:>12.3f}  "
              f"{last[0]:.3f} -> {last[1]:.3f}")
    new, old = med["this tree"], med["before"]
    print(f"this tree / before: steps {new['steps'] / max(old['steps'], 1):.2f}x, steps/s "
          f"{new['steps_s'] / old['steps_s']:.2f}x, CPU per step {old['cpu_step'] / new['cpu_step']:.2f}x less")


if __name__ == "__main__":
    main()
