"""Training speed: ``sslkit.fit`` against the per-sample DataLoader pipeline of SSL tutorials (issue 17).

    python benchmarks/train_speed.py                       # CPU: shapes + digits, SimCLR + BYOL
    python benchmarks/train_speed.py --quick               # smoke test, seconds per case
    python benchmarks/train_speed.py --device cuda         # + CIFAR-10-sized data, ResNet-18 at 32 px

Both sides train the same model from the same initial weights (their hashes are compared) with the
same loss, batch size, AdamW settings (lr, betas, weight decay, no decay on biases and norms) and
warm-up + cosine schedule (re-estimated from the measured step time under a time budget, as ``fit``
does). What differs is what is compared:

* ``sslkit.fit(method, data, ...)`` with its defaults: the dataset on the device, the method's views
  made on whole batches there, the engine's step (see ``sslkit/train``).
* the per-sample peer, as the popular SSL libraries' tutorials train: torchvision transforms of the
  same ``ViewRecipe`` on PIL images in a ``DataLoader`` (2 workers, persistent), each view forwarded
  as its own batch, ``zero_grad / backward / step`` in a plain loop, PyTorch's default settings
  (threads, layout, precision; bf16 autocast on a GPU that has it).

BatchNorm statistics: BYOL (and SimSiam) normalise each view on its own on both sides, as their
official code does, so the two compute the same loss for the same views. SimCLR differs on purpose:
``fit`` normalises over both views together (the paper's global BN over 2N), the tutorial loop
normalises each view's batch separately.

Each case (data x method x {time budget, fixed steps}) runs the two pipelines in fresh processes one
after the other, the order alternating from case to case (``--repeats`` runs every case again in
the other order), so both see the same machine. Weights are copied at step 0 and at a few points during training
and scored by kNN (k=20, cosine) after the clock stopped, so evaluation costs neither side time;
the step-0 score is the random-init row, kNN on the raw pixels (same bank, same test split) the
raw-pixel row.
Printed per case: steps, steps/s, samples/s (images; each gives two views), CPU seconds per step
(user + system, DataLoader workers included), kNN accuracy at the end, time to the target kNN
accuracy; then the ratios fit / peer. The load average is printed: on a shared machine compare the
ratios, not the absolute figures.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

import torch

import sslkit
from sslkit import losses

HERE = os.path.dirname(os.path.abspath(__file__))
# One case per (data, method): image data the kit ships, batch 256 (the setting).
CPU_DATA = ("shapes", "digits")
METHODS = ("simclr", "byol")
# kNN accuracy whose first crossing is timed ("time to target"): above the random-init weights'
# (step 0 is scored too) and below what both pipelines reach in the budgets below, so both can get
# there.
TARGETS = {"shapes": 0.36, "digits": 0.955, "cifar10": 0.40}  # digits: random init scores 0.947
# Fixed wall-clock budgets and step counts, sized for a shared 2-core CPU (--budget-scale for more).
BUDGET_S = {"shapes": 60.0, "digits": 30.0, "cifar10": 300.0}
# shapes: 24 steps, not fewer - at 8 the first steps' one-off costs (layout, allocator) dominated.
STEPS = {"shapes": 24, "digits": 40, "cifar10": 500}
SNAPSHOTS = 6   # weight copies per time-budget run (plus step 0 and the end), for the kNN curve


# ------------------------------------------------------------------------------------------------
# the worker: one pipeline, one case, in a fresh process
# ------------------------------------------------------------------------------------------------
def load_data(name: str, device: str):
    if name == "cifar10":  # the real files when present, else a stand-in of the same size
        try:
            return (sslkit.data.load("cifar10", "train"), sslkit.data.load("cifar10", "test"), False)
        except Exception:  # noqa: BLE001 - DatasetUnavailable: the files cannot be had here
            return (sslkit.data.load("shapes", "train", n=50_000), sslkit.data.load("shapes", "test",
                                                                                     n=10_000), True)
    return sslkit.data.load(name, "train"), sslkit.data.load(name, "test"), False


def build(a: dict, train):
    torch.manual_seed(a["seed"])  # the same initial weights in both processes (hash checked)
    backbone = "resnet18_cifar" if a["data"] == "cifar10" else None
    return sslkit.create(a["method"], data=train, backbone=backbone)


def weights_hash(method) -> str:
    h = hashlib.sha256()
    for k, v in method.state_dict().items():
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


class Snapshots:
    """Copies of the backbone's weights at training times ``at`` (seconds) and at the end."""

    def __init__(self, at: list[float]) -> None:
        self.at, self.taken = list(at), []

    def maybe(self, method, step: int, elapsed: float) -> None:
        if self.at and elapsed >= self.at[0]:
            while self.at and elapsed >= self.at[0]:
                self.at.pop(0)
            self.take(method, step, elapsed)

    def take(self, method, step: int, elapsed: float) -> None:
        state = {k: v.detach().clone() for k, v in method.backbone.state_dict().items()}
        self.taken.append((step, elapsed, state))


def run_fit(a: dict, method, train, snaps: Snapshots) -> int:
    class Copy(sslkit.train.Callback):
        def on_step_end(self, state):
            snaps.maybe(state.method, state.step, state.elapsed)

    stop = {"minutes": a["budget"] / 60} if a["mode"] == "time" else {"steps": a["steps"]}
    hist = sslkit.fit(method, train, batch_size=a["batch"], seed=a["seed"], device=a["device"],
                      progress=False, callbacks=[Copy()], **stop)
    return len(hist)


def peer_loss(method, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
    """The tutorial step: each view through the network as its own batch."""
    m = method
    if m.name == "simclr":
        z1, z2 = m.projector(m.backbone(x1)), m.projector(m.backbone(x2))
        return losses.nt_xent(z1, z2, temperature=m.config.temperature)
    if m.name == "byol":
        p1, p2 = m.predictor(m.projector(m.backbone(x1))), m.predictor(m.projector(m.backbone(x2)))
        with torch.no_grad():
            t1 = m.target_projector(m.target_backbone(x1))
            t2 = m.target_projector(m.target_backbone(x2))
        return losses.negative_cosine(p1, t2) + losses.negative_cosine(p2, t1)
    if m.name == "simsiam":
        z1, z2 = m.projector(m.backbone(x1)), m.projector(m.backbone(x2))
        p1, p2 = m.predictor(z1), m.predictor(z2)
        return 0.5 * (losses.negative_cosine(p1, z2) + losses.negative_cosine(p2, z1))
    raise SystemExit(f"no tutorial step for {m.name!r}")


def run_peer(a: dict, method, train, snaps: Snapshots) -> int:
    import numpy as np
    from PIL import Image
    from torch.utils.data import DataLoader, Dataset

    sys.path.insert(0, HERE)
    from cifar10 import torchvision_views  # the ViewRecipe as torchvision transforms

    from sslkit.train.schedules import StepBudget, WarmupCosine

    dev = torch.device(a["device"])
    recipes = method.view_recipe
    r1, r2 = recipes if isinstance(recipes, list) else (recipes, recipes)
    size = train.sample_shape[-1]
    aug1, aug2 = torchvision_views(r1, size), torchvision_views(r2, size)
    images = train.images.permute(0, 2, 3, 1).numpy()          # (N, H, W, C) uint8

    class Pairs(Dataset):
        def __len__(self) -> int:
            return len(images)

        def __getitem__(self, i: int):
            im = images[i]
            img = Image.fromarray(np.ascontiguousarray(im[..., 0] if im.shape[-1] == 1 else im))
            return aug1(img), aug2(img)

    loader = DataLoader(Pairs(), batch_size=a["batch"], shuffle=True, drop_last=True, num_workers=2,
                        persistent_workers=True, pin_memory=dev.type == "cuda")
    method.to(dev).train()
    params = [p for p in method.parameters() if p.requires_grad]
    lr = method.default_lr * a["batch"] / 256                    # fit's default lr
    betas = tuple(getattr(method, "adam_betas", (0.9, 0.999)))
    opt = torch.optim.AdamW([{"params": [p for p in params if p.ndim >= 2], "weight_decay": 0.05},
                             {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}],
                            lr=lr, betas=betas)
    sched = WarmupCosine(lr, warmup=0.05)
    budget = StepBudget(a["steps"] if a["mode"] == "steps" else None, None,
                        a["budget"] / 60 if a["mode"] == "time" else None, len(loader))
    amp = (torch.autocast("cuda", dtype=torch.bfloat16) if dev.type == "cuda"
           and torch.cuda.is_bf16_supported() else torch.autocast("cpu", enabled=False))
    t0, done, elapsed, total = time.perf_counter(), 0, 0.0, budget.total(0, 0.0)
    while not budget.finished(done, 0, elapsed):
        for x1, x2 in loader:
            for g in opt.param_groups:
                g["lr"] = sched.lr(done, total)
            with amp:
                loss = peer_loss(method, x1.to(dev, non_blocking=True), x2.to(dev, non_blocking=True))
            opt.zero_grad()
            loss.backward()
            opt.step()
            done += 1
            method.on_step_end(done, total)
            if done % (1 if dev.type == "cpu" else 25) == 0:   # the loss read of a tutorial's log line
                float(loss)
            elapsed = time.perf_counter() - t0
            budget.record(done, elapsed)
            total = budget.total(done, elapsed)
            snaps.maybe(method, done, elapsed)
            if budget.finished(done, 0, elapsed):
                break
    loader._iterator._shutdown_workers()  # joined: their CPU time is counted
    return done


def knn_curve(a: dict, method, train, test, snaps: Snapshots) -> list[list[float]]:
    g = torch.Generator().manual_seed(0)
    bank = train.subset(torch.randperm(len(train), generator=g)[: a["knn_train"]])
    dev = torch.device(a["device"])
    bank, test = bank.to(dev), test.to(dev)
    curve = []
    for step, t, state in snaps.taken:
        method.backbone.load_state_dict(state)
        ftr, ytr = sslkit.eval.extract_features(method, bank)
        fte, yte = sslkit.eval.extract_features(method, test)
        curve.append([step, round(t, 2), sslkit.eval.knn_accuracy(ftr, ytr, fte, yte, k=20)])
    return curve


def worker(a: dict) -> dict:
    if a["threads"]:
        torch.set_num_threads(a["threads"])
    train, test, stand_in = load_data(a["data"], a["device"])
    method = build(a, train)
    start_hash = weights_hash(method)
    at = [a["budget"] * (i + 1) / SNAPSHOTS for i in range(SNAPSHOTS - 1)] if a["mode"] == "time" else []
    snaps = Snapshots(at)
    snaps.take(method, 0, 0.0)   # the initial weights: the random-init row
    load0, c0 = os.getloadavg()[0], os.times()
    t0 = time.perf_counter()
    steps = (run_fit if a["pipeline"] == "fit" else run_peer)(a, method, train, snaps)
    if a["device"].startswith("cuda"):
        torch.cuda.synchronize()
    wall = time.perf_counter() - t0
    c1 = os.times()
    snaps.take(method, steps, wall)
    cpu = (c1.user + c1.system + c1.children_user + c1.children_system
           - c0.user - c0.system - c0.children_user - c0.children_system)
    return {"pipeline": a["pipeline"], "steps": steps, "wall": wall, "cpu": cpu, "hash": start_hash,
            "load": [load0, os.getloadavg()[0]], "threads": torch.get_num_threads(),
            "stand_in": stand_in, "curve": knn_curve(a, method, train, test, snaps)}


# ------------------------------------------------------------------------------------------------
# the parent: alternate the pipelines, print the table and the ratios
# ------------------------------------------------------------------------------------------------
def spawn(a: dict) -> dict:
    with tempfile.NamedTemporaryFile("r", suffix=".json") as out:
        cmd = [sys.executable, os.path.abspath(__file__), "--worker", json.dumps(a), out.name]
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if proc.returncode:
            raise SystemExit(f"{a['pipeline']} on {a['data']}/{a['method']} failed:\n{proc.stdout[-3000:]}")
        return json.load(out)


def raw_knn(name: str, knn_train: int) -> float:
    """kNN accuracy on raw pixels with the same memory bank and test split: the floor to beat."""
    train, test, _ = load_data(name, "cpu")
    g = torch.Generator().manual_seed(0)
    bank = train.subset(torch.randperm(len(train), generator=g)[:knn_train])
    flat = lambda d: d.images.float().flatten(1)   # noqa: E731 - (N, C*H*W)
    return sslkit.eval.knn_accuracy(flat(bank), bank.labels, flat(test), test.labels, k=20)


def time_to(curve: list, target: float) -> float | None:
    return next((t for _, t, acc in curve if acc >= target), None)


def summarise(a: dict, r: dict) -> dict:
    return {"steps": r["steps"], "steps_s": r["steps"] / r["wall"],
            "samples_s": r["steps"] * a["batch"] / r["wall"], "cpu_step": r["cpu"] / max(r["steps"], 1),
            "knn": r["curve"][-1][2], "t_target": time_to(r["curve"], a["target"]), "wall": r["wall"],
            "knn0": r["curve"][0][2]}


def show_case(a: dict, runs: list[dict], raw: float) -> dict:
    by = {p: [summarise(a, r) for r in runs if r["pipeline"] == p] for p in ("fit", "peer")}
    med = {p: {k: (statistics.median([s[k] for s in v]) if all(s[k] is not None for s in v) else None)
               for k in v[0]} for p, v in by.items()}
    loads = [x for r in runs for x in r["load"]]
    rule = f"{a['budget']:.0f} s budget" if a["mode"] == "time" else f"{a['steps']} steps"
    print(f"\n### {a['data']} / {a['method']} / {rule} (batch {a['batch']}; load average "
          f"{min(loads):.1f}-{max(loads):.1f}; {len(runs) // 2} run(s) each, medians)")
    print(f"{'pipeline':<22}{'steps':>7}{'steps/s':>9}{'samples/s':>11}{'cpu-s/step':>12}"
          f"{'kNN end':>9}{'t(kNN>=' + format(a['target'], '.2f') + ')':>14}")
    for p, name in (("fit", "sslkit.fit"), ("peer", "per-sample DataLoader")):
        m = med[p]
        tt = f"{m['t_target']:.0f} s" if m["t_target"] is not None else "not reached"
        print(f"{name:<22}{m['steps']:>7.0f}{m['steps_s']:>9.2f}{m['samples_s']:>11.0f}"
              f"{m['cpu_step']:>12.2f}{m['knn']:>9.3f}{tt:>14}")
    print(f"{'random init (step 0)':<61}{med['fit']['knn0']:>9.3f}")
    print(f"{'raw pixels':<61}{raw:>9.3f}")
    f, p = med["fit"], med["peer"]
    ratio = {"steps_s": f["steps_s"] / p["steps_s"], "samples_s": f["samples_s"] / p["samples_s"],
             "cpu_per_step": p["cpu_step"] / f["cpu_step"], "knn_points": 100 * (f["knn"] - p["knn"]),
             "time_to_target": (p["t_target"] / f["t_target"]) if f["t_target"] and p["t_target"] else None}
    tt = f"{ratio['time_to_target']:.2f}x sooner" if ratio["time_to_target"] else "n/a"
    print(f"fit / peer: steps/s {ratio['steps_s']:.2f}x, samples/s {ratio['samples_s']:.2f}x, CPU per "
          f"step {ratio['cpu_per_step']:.2f}x less, kNN {ratio['knn_points']:+.1f} points, target {tt}")
    return {"case": {k: a[k] for k in ("data", "method", "mode", "budget", "steps", "batch")},
            "median": med, "ratio": ratio, "raw_pixels": raw, "runs": runs}


def machine(device: str) -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                if line.startswith("model name")), platform.processor()) if os.path.exists(
                    "/proc/cpuinfo") else platform.processor()
    gpu = torch.cuda.get_device_name() if device.startswith("cuda") else "no GPU used"
    return (f"{platform.machine()} {cpu}, {os.cpu_count()} cores, torch {torch.__version__}, "
            f"{torch.get_num_threads()} torch threads, {gpu}, load average "
            f"{', '.join(f'{x:.1f}' for x in os.getloadavg())}")


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--worker":
        result = worker(json.loads(sys.argv[2]))
        with open(sys.argv[3], "w") as f:
            json.dump(result, f)
        return
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=None, help="comma-separated (default: shapes,digits; "
                                                "+cifar10 on a GPU)")
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--modes", default="time,steps", help="time (fixed budget), steps (fixed count)")
    p.add_argument("--device", default=None, help="cpu or cuda (default: sslkit.device())")
    p.add_argument("--batch-size", type=int, default=None, help="default 256 (512 for cifar10)")
    p.add_argument("--budget-scale", type=float, default=1.0, help="multiply budgets and step counts")
    p.add_argument("--repeats", type=int, default=1, help="run every case this many times per pipeline")
    p.add_argument("--threads", type=int, default=0, help="torch threads on both sides (0: default)")
    p.add_argument("--knn-train", type=int, default=1000, help="kNN memory bank (train images)")
    p.add_argument("--quick", action="store_true", help="seconds per case: a smoke test")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None, help="also write every run's figures to this file")
    args = p.parse_args()
    device = str(args.device or sslkit.device())
    names = args.data.split(",") if args.data else list(CPU_DATA) + (
        ["cifar10"] if device.startswith("cuda") else [])
    scale = 0.05 if args.quick else args.budget_scale
    print(f"machine: {machine(device)}")
    results, k = [], 0
    for data in names:
        knn_bank = 256 if args.quick else args.knn_train
        raw = raw_knn(data, knn_bank)
        for method in args.methods.split(","):
            for mode in args.modes.split(","):
                a = {"data": data, "method": method, "mode": mode, "device": device, "seed": args.seed,
                     "batch": args.batch_size or (512 if data == "cifar10" else 256),
                     "budget": BUDGET_S[data] * scale, "steps": max(2, round(STEPS[data] * scale)),
                     "target": TARGETS[data], "threads": args.threads,
                     "knn_train": knn_bank}
                runs = []
                for rep in range(args.repeats):
                    order = ("fit", "peer") if (k + rep) % 2 == 0 else ("peer", "fit")
                    runs += [spawn({**a, "pipeline": pipe}) for pipe in order]
                k += 1
                if len({r["hash"] for r in runs}) != 1:
                    raise SystemExit(f"initial weights differ between the pipelines: {runs}")
                results.append(show_case(a, runs, raw))
    print("\n## summary (fit / per-sample peer)")
    print(f"{'case':<34}{'steps/s':>9}{'samples/s':>11}{'CPU/step':>10}{'kNN pts':>9}{'to target':>11}")
    for r in results:
        c, q = r["case"], r["ratio"]
        rule = f"{c['budget']:.0f} s" if c["mode"] == "time" else f"{c['steps']} steps"
        tt = f"{q['time_to_target']:.2f}x" if q["time_to_target"] else "n/a"
        print(f"{c['data'] + ' / ' + c['method'] + ' / ' + rule:<34}{q['steps_s']:>8.2f}x"
              f"{q['samples_s']:>10.2f}x{q['cpu_per_step']:>9.2f}x{q['knn_points']:>+9.1f}{tt:>11}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": machine(device), "results": results}, f, indent=1)


if __name__ == "__main__":
    main()
