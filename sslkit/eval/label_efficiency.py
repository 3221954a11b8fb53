"""Label efficiency: accuracy as a function of how many labels you have.

The question SSL answers: with 1, 5, 10 labels per class, how much better is a probe on
self-supervised features than one on raw pixels, on a random network, or a network trained on
those few labels alone? (The semi-supervised protocol of SimCLR Sec. 5 / Table 7, in miniature.)

    res = sslkit.eval.label_efficiency({"SimCLR": method}, train, test, baselines=("raw pixels",))
    print(res.table()); res.plot("runs/label_efficiency.png")

Every row uses the same probe and, for each seed, the same class-stratified labelled subset.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from sslkit import checks
from sslkit.eval import baselines as base
from sslkit.eval.features import Data, data_labels, data_size, data_subset, extract_features
from sslkit.eval.knn import knn_accuracy
from sslkit.eval.linear import linear_probe

BASELINES = ("raw pixels", "random init", "supervised")
PROBES = ("knn", "linear")


def stratified_subset(labels: torch.Tensor, labels_per_class: int | None, seed: int) -> torch.Tensor:
    """Indices of ``labels_per_class`` samples of every class, drawn at random by ``seed``.

    ``None`` means every labelled sample. Unlabeled samples (label -1) are never chosen. The result
    is sorted and lives on ``labels``' device; the draw is done on the CPU so it is the same on every
    device.
    """
    checks.tensor("labels", labels, ndim=1, dtypes="int")
    seed = checks.integer("seed", seed)
    cpu = labels.cpu()
    if labels_per_class is None:
        return torch.nonzero(cpu >= 0).flatten().to(labels.device)
    labels_per_class = checks.integer("labels_per_class", labels_per_class, min=1)
    classes = torch.unique(cpu[cpu >= 0])
    counts = {int(c): int((cpu == c).sum()) for c in classes}
    smallest = min(counts.values(), default=0)
    if labels_per_class > smallest:
        raise ValueError(f"labels_per_class={labels_per_class} is larger than the smallest class "
                         f"({smallest} samples); allowed: 1..{smallest} or None (all labels)")
    g = torch.Generator().manual_seed(seed)
    picks = []
    for c in classes:
        members = torch.nonzero(cpu == c).flatten()  # (n_c,)
        picks.append(members[torch.randperm(len(members), generator=g)[:labels_per_class]])
    return torch.cat(picks).sort().values.to(labels.device)


def _budget_name(b: int | None) -> str:
    return "all" if b is None else str(b)


@dataclass
class LabelEfficiencyResult:
    """Accuracies ``scores[row][budget] = [acc per seed]`` (row = encoder or baseline name)."""

    budgets: list[int | None]
    seeds: list[int]
    probe: str
    scores: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    # mean labelled samples per class behind "all" (for plotting)
    all_per_class: float = float("nan")

    def mean(self, row: str, budget: int | None) -> float:
        return float(torch.tensor(self.scores[row][_budget_name(budget)]).mean())

    def std(self, row: str, budget: int | None) -> float:
        """Standard deviation over seeds (population, ddof=0; 0 for a single seed)."""
        vals = torch.tensor(self.scores[row][_budget_name(budget)], dtype=torch.float64)
        return float(vals.std(unbiased=False))

    def table(self) -> str:
        """Plain-text table, accuracy in % as mean ± std over seeds."""
        cols = [f"{_budget_name(b)} / class" if b is not None else "all labels" for b in self.budgets]
        width = max([len(r) for r in self.scores] + [len("labels per class")])
        head = f"{'labels per class':<{width}} | " + " | ".join(f"{c:>13}" for c in cols)
        lines = [head, "-" * len(head)]
        for row in self.scores:
            cells = [f"{100 * self.mean(row, b):5.1f} ± {100 * self.std(row, b):4.1f}"
                     for b in self.budgets]
            lines.append(f"{row:<{width}} | " + " | ".join(f"{c:>13}" for c in cells))
        lines.append(f"({self.probe} probe; mean ± std over {len(self.seeds)} seeds, "
                     f"class-stratified labelled subsets)")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()

    def plot(self, path: str | Path | None = None) -> Any:
        """Accuracy vs labels per class (log x axis, error bars = std over seeds).

        Saves a PNG at ``path`` (parent folders created) and returns the path; with ``path=None``
        returns the matplotlib Figure (displays inline in notebooks).
        """
        from matplotlib.figure import Figure  # object API: no global pyplot state or backend

        xs = [self.all_per_class if b is None else b for b in self.budgets]
        fig = Figure(figsize=(6, 4), dpi=120)
        ax = fig.add_subplot()
        for row in self.scores:
            means = [100 * self.mean(row, b) for b in self.budgets]
            stds = [100 * self.std(row, b) for b in self.budgets]
            ax.errorbar(xs, means, yerr=stds, marker="o", capsize=3, label=row)
        ax.set_xscale("log")
        ax.set_xticks(xs, [_budget_name(b) for b in self.budgets])
        ax.minorticks_off()
        ax.set_xlabel("labels per class")
        ax.set_ylabel("test accuracy (%)")
        ax.set_title(f"Label efficiency ({self.probe} probe, {len(self.seeds)} seeds)")
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        if path is None:
            return fig
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path)
        return path


def _is_feature_pair(value: Any) -> bool:
    return (isinstance(value, (tuple, list)) and len(value) == 2
            and all(isinstance(v, torch.Tensor) for v in value))


def _has_backbone(model: Any) -> bool:
    try:
        base.backbone_of(model)
    except ValueError:
        return False
    return True


def label_efficiency(encoders: Mapping[str, Any] | Any, train_data: Data, test_data: Data,
                     labels_per_class: Sequence[int | None] = (1, 5, 10, None),
                     seeds: Iterable[int] = range(5), probe: str = "knn",
                     baselines: Sequence[str] = ("raw pixels",), *, k: int = 20,
                     temperature: float = 0.07, weight_decay: float = 1e-3,
                     supervised_steps: int = 200, batch_size: int = 512,
                     verbose: bool = False) -> LabelEfficiencyResult:
    """Probe accuracy of each encoder and baseline at each label budget, over several seeds.

    Args:
        encoders: ``{name: model}`` where model is a Method, a backbone, a callable ``x -> (B, D)`` or a
            precomputed pair ``(train_feats (N, D), test_feats (M, D))`` aligned with the data; a single
            model is named "encoder".
        train_data, test_data: Datasets or ``(x, labels)`` pairs; labelled subsets are drawn from
            ``train_data`` (unlabeled samples, label -1, are skipped), the full ``test_data`` is scored.
        labels_per_class: budgets; ``None`` = every labelled training sample.
        seeds: one class-stratified subset per seed (the same subset for every row).
        probe: "knn" (:func:`knn_accuracy` with ``k``, ``temperature``) or "linear"
            (:func:`linear_probe` with ``weight_decay``) - the same protocol for all rows.
        baselines: any of "raw pixels" (flattened inputs, same probe), "random init" (the first
            model encoder's architecture re-initialised, its BatchNorm statistics recalibrated on the
            unlabelled ``train_data`` inputs - see :mod:`sslkit.eval.baselines` - same probe) and
            "supervised" (that architecture trained from scratch on the labelled subset for
            ``supervised_steps``; no probe).
        batch_size: for feature extraction.
        verbose: print each row as it is done.
    """
    rows = dict(encoders) if isinstance(encoders, Mapping) else {"encoder": encoders}
    if not rows and not baselines:
        raise ValueError("encoders is empty and baselines=(); nothing to evaluate")
    n_train = data_size("train_data", train_data)
    data_size("test_data", test_data)
    probe = checks.choice("probe", probe, PROBES)
    for b in baselines:
        checks.choice("baselines", b, BASELINES)
    budgets = list(labels_per_class)
    if not budgets:
        raise ValueError("labels_per_class is empty; give e.g. (1, 5, 10, None)")
    seeds = [checks.integer("seeds", s) for s in seeds]
    if not seeds:
        raise ValueError("seeds is empty; give e.g. range(5)")
    k = checks.integer("k", k, min=1)
    models = [m for m in rows.values() if _has_backbone(m)]
    if any(b != "raw pixels" for b in baselines) and not models:
        raise ValueError(f"baselines={tuple(baselines)!r} need an architecture: pass at least one Method "
                         f"or backbone in encoders (only 'raw pixels' works without)")
    train_labels = data_labels(train_data)
    # Draw every subset up front: bad budgets fail before any (slow) feature extraction.
    subsets = {(_budget_name(b), s): stratified_subset(train_labels, b, s) for b in budgets for s in seeds}

    order: dict[str, Any] = {}
    if "raw pixels" in baselines:
        order["raw pixels"] = base.raw_pixels
    if "random init" in baselines:
        # BatchNorm recalibrated on the unlabelled training inputs, so the row differs from a
        # trained model in the weights only (see sslkit.eval.baselines).
        order["random init"] = base.random_init(models[0], seed=0, data=train_data)
    order.update(rows)

    labelled = train_labels >= 0
    result = LabelEfficiencyResult(budgets, seeds, probe, all_per_class=float(
        labelled.sum()) / max(1, len(torch.unique(train_labels[labelled]))))
    for name, model in order.items():
        if _is_feature_pair(model):
            tr_f, te_f = model
            if len(tr_f) != n_train or len(te_f) != len(data_labels(test_data)):
                raise ValueError(f"encoders[{name!r}]: feature pair has {len(tr_f)} and {len(te_f)} "
                                 f"rows; train_data/test_data have {n_train} and "
                                 f"{len(data_labels(test_data))}")
            tr_y, te_y = train_labels.to(tr_f.device), data_labels(test_data).to(tr_f.device)
        else:
            tr_f, tr_y = extract_features(model, train_data, batch_size)
            te_f, te_y = extract_features(model, test_data, batch_size)
        result.scores[name] = {}
        for b in budgets:
            accs = []
            for s in seeds:
                idx = subsets[(_budget_name(b), s)].to(tr_f.device)
                if probe == "knn":
                    accs.append(knn_accuracy(tr_f[idx], tr_y[idx], te_f, te_y, k, temperature))
                else:
                    accs.append(linear_probe(tr_f[idx], tr_y[idx], te_f, te_y,
                                             weight_decay=weight_decay, seed=s))
            result.scores[name][_budget_name(b)] = accs
        if verbose:
            print(f"  {name}: " + ", ".join(f"{_budget_name(b)}={100 * result.mean(name, b):.1f}%"
                                            for b in budgets), flush=True)

    if "supervised" in baselines:
        result.scores["supervised"] = {}
        for b in budgets:
            result.scores["supervised"][_budget_name(b)] = [
                base.supervised(models[0], data_subset(train_data, subsets[(_budget_name(b), s)]),
                                test_data, steps=supervised_steps, seed=s) for s in seeds]
        if verbose:
            print("  supervised: " + ", ".join(f"{_budget_name(b)}={100 * result.mean('supervised', b):.1f}%"
                                               for b in budgets), flush=True)
    return result
