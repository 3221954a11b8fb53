"""``sslkit zoo build NAME``: retrain a zoo entry from scratch, measure it, write weights and card.

Same recipe, same seed, same threads and device -> the same weights, bit for bit: the model is
initialised under ``torch.manual_seed(entry.seed)``, ``fit`` seeds the batch order and the method's
randomness with the same seed, and the weights file is written from an in-memory buffer (its bytes
depend on the tensors only).

The card's metrics are measured on the saved (float16-rounded) weights, i.e. on what ``load``
gives. Every probe has two baselines measured the same way: the raw input (flattened pixels,
samples or frames; a bag of tokens for text) and the random init - the same method at the same
seed *before* training, its BatchNorm statistics recalibrated on the unlabelled training split
(see :mod:`sslkit.eval.baselines`).
"""
from __future__ import annotations

import copy
import math
import os
import platform
import time
import warnings
from pathlib import Path
from typing import Any

import torch

from sslkit import checks
from sslkit.zoo import extras as extra_metrics
from sslkit.zoo.entries import Entry, entry
from sslkit.zoo.files import (FORMAT, VERSION, ZooError, compact_state, create_method, load_data,
                              write_card, write_weights)

HISTORY_POINTS = 100  # the card keeps the loss as <= 100 window means: enough to draw the curve
KNN_K = 20            # kNN protocol of Wu et al. 2018 (k=20, T=0.07), as sslkit.eval.knn_accuracy
# Few-label probes of the label (SimCLR's semi-supervised protocol in miniature): where SSL features
# pay off on small data sets whose raw pixels are already easy with every label (8x8 digits: ~98%
# raw-pixel kNN). Five class-stratified draws per budget, the same draws for every row.
FEW_LABELS = (1, 5, 10)
FEW_LABEL_SEEDS = 5
PROBES = ("knn", "linear")
ROWS = ("model", "random_init", "raw")


def build(name: str, *, steps: int | None = None, threads: int | None = None,
          out: str | os.PathLike | None = None, device: torch.device | str | None = None,
          progress: bool = False) -> dict[str, Any]:
    """Train entry ``name`` from scratch, write ``NAME.pt`` and ``NAME.json`` into ``out``; return the card.

    Args:
        steps: override the recipe's step count (quick rebuilds, tests); the card records it.
        threads: CPU threads for the build (``torch.set_num_threads``; restored afterwards).
        out: folder for the files (None: the package's zoo folder).
        device: None -> ``sslkit.device()``.
        progress: show fit's progress bar.
    """
    import sslkit
    from sslkit import quick
    from sslkit.train.fit import DEFAULT_WEIGHT_DECAY

    e = entry(name)
    steps = e.steps if steps is None else checks.integer("steps", steps, min=1)
    if threads is not None:
        threads = checks.integer("threads", threads, min=1)
    if quick.enabled():
        raise ValueError("SSLKIT_QUICK is set: fit would stop after a few steps whatever the recipe "
                         "says; unset it to build a zoo entry")
    dev = sslkit.device(None if device is None else str(device))
    old_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        train, test = load_data(e, "train"), load_data(e, "test")
        _check_recipe(e, train)
        cuda = [dev.index or 0] if dev.type == "cuda" else []
        with torch.random.fork_rng(devices=cuda), warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            torch.manual_seed(e.seed)                 # the model's initialisation
            method = create_method(e, train)
            init = copy.deepcopy(method)              # the random-init baseline: the same start
            lr = e.lr if e.lr is not None else method.default_lr * e.batch_size / 256
            wd = e.weight_decay if e.weight_decay is not None else DEFAULT_WEIGHT_DECAY[e.optimizer]
            history = sslkit.fit(method, train, steps=steps, batch_size=e.batch_size, lr=lr,
                                 weight_decay=wd, optimizer=e.optimizer, seed=e.seed, device=dev,
                                 progress=progress)
        for w in caught:  # shown now, and kept in the card
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        if len(history) < steps or history.interrupted:
            raise ZooError(f"zoo build {name!r} stopped after {len(history)} of {steps} steps "
                           f"(interrupted or diverged: loss {history.last_loss}); nothing written")
        state, float32 = compact_state(method)
        weights = write_weights(name, state, out, float32)
        method.load_state_dict(state)                 # measure what `load` gives: fp16-rounded
        t0 = time.perf_counter()
        metrics, few = measure(e, method.eval(), init.to(dev), train.to(dev), test.to(dev))
        extras = {x: getattr(extra_metrics, x)(method, init, train.to(dev), test.to(dev))
                  for x in e.extras}
        eval_s = time.perf_counter() - t0
        command = f"sslkit zoo build {name}" + (f" --steps {steps}" if steps != e.steps else "") + \
            f" --threads {torch.get_num_threads()} --device {dev.type}"
        card = {
            "format": FORMAT + "-card", "version": VERSION, "name": name, "purpose": e.purpose,
            "method": e.method, "method_config": _method_config(method),
            "backbone": {"name": getattr(method, "backbone_name", None) or e.backbone,
                         "class": type(method.backbone).__name__, "options": e.backbone_options,
                         "parameters": _count(method.backbone)},
            "parameters": _count(method),
            "data": {"name": e.data, "options": e.data_options, "train_samples": len(train),
                     "test_samples": len(test), "sample_shape": list(train.sample_shape)},
            "steps": len(history), "recipe_steps": e.steps, "batch_size": e.batch_size, "lr": lr,
            "weight_decay": wd, "optimizer": e.optimizer, "seed": e.seed,
            "command": command, "recipe": e.recipe(),
            "history": compact_history(history),
            "training": {"seconds": round(history.elapsed, 1),
                         "seconds_per_step": round(history.elapsed / max(1, len(history)), 4),
                         **hardware(dev)},
            "evaluation": {"seconds": round(eval_s, 1), "protocol": PROTOCOL},
            "metrics": metrics, "few_labels": few, "extras": extras,
            "warnings": sorted({f"{w.category.__name__}: {w.message}" for w in caught}),
            "weights": weights, "sslkit_version": sslkit.__version__,
        }
        card = _finite(card)
        write_card(name, card, out)
        return card
    finally:
        torch.set_num_threads(old_threads)


PROTOCOL = {
    "train": "the entry's train split (unlabelled samples skipped); scored on the whole test split",
    "knn": f"weighted kNN on cosine similarity, k={KNN_K}, T=0.07 (sslkit.eval.knn_accuracy)",
    "linear": "L-BFGS logistic regression on standardised features (sslkit.eval.linear_probe)",
    "rows": {"model": "the trained method's embed (float16 weights, as sslkit.zoo.load gives)",
             "random_init": "the same method at the same seed before training, BatchNorm statistics "
                            "recalibrated on the unlabelled train split",
             "raw": "the raw input flattened (pixels, samples, frames); for text a bag of tokens"},
    "factors": "categorical factors as they are; continuous ones in 3 bins cut at the train terciles",
    "few_labels": f"the label only: kNN (k = min({KNN_K}, labelled samples)) and linear probes fitted on "
                  f"{list(FEW_LABELS)} labelled train samples per class, mean over {FEW_LABEL_SEEDS} "
                  f"class-stratified draws (seeds 0..{FEW_LABEL_SEEDS - 1}, the same for every row; "
                  f"sslkit.eval.label_efficiency), scored on the whole test split",
}


def _check_recipe(e: Entry, train: Any) -> None:
    """Fail before training on targets/extras the data or the zoo does not have."""
    allowed = ["label", *sorted(train.factors)]
    for t in e.targets:
        checks.choice(f"entry {e.name!r} target", t, allowed)
    for x in e.extras:
        checks.choice(f"entry {e.name!r} extra", x, extra_metrics.NAMES)


def raw_features(data: Any):
    """The raw-input baseline as a feature function ``x -> (B, D)``."""
    if data.kind != "text":
        return lambda x: x.flatten(1).float()
    vocab, special = data.vocab_size, torch.tensor(sorted(data.tokenizer.special_ids))

    def bag_of_tokens(ids: torch.Tensor) -> torch.Tensor:  # (B, L) -> (B, V) token counts
        counts = torch.zeros(len(ids), vocab, device=ids.device)
        counts.scatter_add_(1, ids, torch.ones_like(ids, dtype=counts.dtype))
        counts[:, special.to(ids.device)] = 0  # [CLS], [PAD], ... say nothing about the text
        return counts
    return bag_of_tokens


def targets(train: Any, test: Any, target: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Class ids (N,), (M,) for ``target``: the labels or a factor (continuous -> tercile bins)."""
    if target == "label":
        return train.labels, test.labels
    a, b = train.factors[target], test.factors[target]
    if not a.is_floating_point():
        return a.long(), b.long()
    edges = torch.quantile(a.float(), torch.tensor([1 / 3, 2 / 3], device=a.device))
    return torch.bucketize(a, edges), torch.bucketize(b, edges)


def measure(e: Entry, method: Any, init: Any, train: Any, test: Any
            ) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """``metrics[target][probe][row]`` accuracies for rows model / random_init / raw, and the
    few-label probes of the label ``few[probe][labels_per_class][row]`` (None without "label")."""
    from sslkit import eval as ev

    ev.recalibrate_batchnorm(init, train)
    rows = {"model": method, "random_init": init, "raw": raw_features(train)}
    feats = {r: (ev.extract_features(m, train)[0], ev.extract_features(m, test)[0])
             for r, m in rows.items()}
    metrics: dict[str, Any] = {}
    for target in e.targets:
        ytr, yte = targets(train, test, target)
        ktr, kte = ytr >= 0, yte >= 0  # unlabelled samples (-1) are skipped
        metrics[target] = {p: {} for p in PROBES}
        for r, (ftr, fte) in feats.items():
            args = (ftr[ktr.to(ftr.device)], ytr[ktr].to(ftr.device), fte[kte.to(fte.device)],
                    yte[kte].to(ftr.device))
            metrics[target]["knn"][r] = round(ev.knn_accuracy(*args, k=KNN_K), 4)
            metrics[target]["linear"][r] = round(ev.linear_probe(*args), 4)
    return metrics, (few_labels(feats, train, test) if "label" in e.targets else None)


def few_labels(feats: dict[str, tuple[torch.Tensor, torch.Tensor]], train: Any, test: Any
               ) -> dict[str, Any]:
    """``few[probe][labels_per_class][row]``: mean accuracy over FEW_LABEL_SEEDS stratified draws."""
    from sslkit import eval as ev

    few: dict[str, Any] = {"labels_per_class": list(FEW_LABELS), "seeds": FEW_LABEL_SEEDS}
    for probe in PROBES:
        res = ev.label_efficiency(feats, train, test, labels_per_class=FEW_LABELS,
                                  seeds=range(FEW_LABEL_SEEDS), probe=probe, baselines=(), k=KNN_K)
        few[probe] = {str(b): {r: round(res.mean(r, b), 4) for r in feats} for b in FEW_LABELS}
    return few


def compact_history(h: Any, points: int = HISTORY_POINTS) -> dict[str, Any]:
    """Loss, lr and logged terms as means over windows of ``every`` steps (<= ``points`` values)."""
    n = len(h)
    every = max(1, math.ceil(n / points))
    windows = [(s, min(s + every, n)) for s in range(0, n, every)]

    def means(values: list[float]) -> list[float | None]:
        out = []
        for a, b in windows:
            vals = [v for v in values[a:b] if math.isfinite(v)]
            out.append(float(f"{sum(vals) / len(vals):.5g}") if vals else None)
        return out
    return {"every": every, "statistic": f"mean over each window of {every} steps",
            "step": [h.step[b - 1] for _, b in windows], "loss": means(h.loss), "lr": means(h.lr),
            "terms": {k: means(v) for k, v in h.terms.items()},
            "first_loss": h.loss[0] if n else None, "last_loss": h.loss[-1] if n else None}


def hardware(dev: torch.device) -> dict[str, Any]:
    """What the build ran on: device, GPU and CPU model, usable cores, threads, versions."""
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"device": str(dev),
            "gpu": torch.cuda.get_device_name(dev) if dev.type == "cuda" else None,
            "cpu": cpu or None, "cores": cores, "threads": torch.get_num_threads(),
            "torch": torch.__version__, "python": platform.python_version(),
            "platform": platform.platform()}


def _method_config(method: Any) -> Any:
    import dataclasses
    cfg = getattr(method, "config", None)
    return dataclasses.asdict(cfg) if dataclasses.is_dataclass(cfg) else None


def _count(module: Any) -> int:
    return sum(p.numel() for p in module.parameters())


def _finite(value: Any) -> Any:
    """NaN/inf -> None, tuples -> lists (the card is strict JSON)."""
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
