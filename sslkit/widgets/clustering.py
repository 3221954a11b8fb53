"""Explorer for clustering methods (notebook 09): which images each prototype gathers, and how
balanced the assignment is with and without Sinkhorn's equipartition.

    w = prototype_explorer(swav_model, test, labels=test.labels, classes=test.classes)
    w.controls["sinkhorn"].value = True     # re-renders: balanced codes instead of nearest prototype
    w.controls["rank"].value = 3            # the 4th largest cluster's images
"""
from __future__ import annotations

from typing import Any

import ipywidgets as widgets
import torch

from sslkit import checks
from sslkit.widgets.base import Explorer
from sslkit.widgets.render import TEXT, TITLE, as_images, draw_image, figure, to_png


def cluster_sizes(assignment: torch.Tensor, n_clusters: int) -> torch.Tensor:
    """Images per cluster (K,) of an assignment (N,) of cluster ids in [0, n_clusters)."""
    checks.tensor("assignment", assignment, ndim=1, dtypes="int")
    n_clusters = checks.integer("n_clusters", n_clusters, min=1)
    if len(assignment) and (int(assignment.min()) < 0 or int(assignment.max()) >= n_clusters):
        raise ValueError(f"assignment holds ids {int(assignment.min())}..{int(assignment.max())}; "
                         f"allowed: 0..{n_clusters - 1}")
    return torch.bincount(assignment.cpu(), minlength=n_clusters)


def prototype_explorer(model: Any, images: object, labels: torch.Tensor | None = None,
                       classes: list[str] | None = None, n_show: int = 10, sinkhorn: bool = False) -> Explorer:
    """Cluster sizes and the images of one prototype, for a model with ``codes(x, sinkhorn)`` (SwAV).

    ``images``: float (N, C, H, W) in [0, 1] or an image Dataset, coded as one batch (Sinkhorn
    balances the codes over this batch). Each image goes to the prototype with its largest code
    entry: with ``sinkhorn=False`` that is its nearest prototype, with ``True`` the balanced code's.
    Controls: ``sinkhorn`` (toggle), ``rank`` (which cluster, by size: 0 = the largest). The view:
    the sorted cluster sizes (a flat profile = balanced) and up to ``n_show`` images of the chosen
    cluster, its highest-scoring first, titled with their labels when given.
    """
    if not callable(getattr(model, "codes", None)):
        raise ValueError(f"model: a {type(model).__name__} has no codes(x, sinkhorn) method; pass a SwAV model")
    x = as_images(images)                                                  # (N, C, H, W)
    if labels is not None:
        checks.tensor("labels", labels, ndim=1, dtypes="int")
        if len(labels) != len(x):
            raise ValueError(f"labels has {len(labels)} entries for {len(x)} images")
    n_show = checks.integer("n_show", n_show, min=1, max=40)
    checks.choice("sinkhorn", sinkhorn, (True, False))
    device = next(model.parameters()).device
    codes = {}                                                             # sinkhorn -> (N, K) codes
    for sk in (False, True):
        codes[sk] = model.codes(x.to(device), sinkhorn=sk).float().cpu()
    k = codes[False].shape[1]
    controls = {
        "sinkhorn": widgets.Checkbox(value=sinkhorn, description="Sinkhorn (balanced codes)", indent=False),
        "rank": widgets.IntSlider(value=0, min=0, max=k - 1, description="cluster (by size)",
                                  continuous_update=False, style={"description_width": "initial"}),
    }

    def render() -> bytes:
        sk, rank = controls["sinkhorn"].value, controls["rank"].value
        c = codes[sk]
        assign = c.argmax(1)                                               # (N,)
        sizes = cluster_sizes(assign, k)                                   # (K,)
        order = sizes.argsort(descending=True, stable=True)
        proto = int(order[rank])
        members = (assign == proto).nonzero().flatten()
        members = members[c[members, proto].argsort(descending=True)][:n_show]
        cols = n_show // 2 + n_show % 2
        fig = figure(3.0 + 0.9 * cols, 2.2)
        ax = fig.add_axes([0.07, 0.18, 2.4 / (3.0 + 0.9 * cols), 0.65])
        ax.bar(range(k), sizes[order].numpy(), width=1.0, color="#888888")
        ax.bar([rank], [int(sizes[proto])], width=1.0, color="#d62728")
        ax.axhline(len(x) / k, color="black", lw=0.8, ls="--")
        ax.set_xlabel("clusters, largest first", fontsize=TEXT)
        ax.set_ylabel("images", fontsize=TEXT)
        ax.tick_params(labelsize=TEXT)
        used, largest = int((sizes > 0).sum()), int(sizes.max())
        ax.set_title(f"{used} of {k} used, largest {largest} of {len(x)} (dashed: N/K)", fontsize=TEXT)
        left = 3.0 / (3.0 + 0.9 * cols)
        for j, i in enumerate(members.tolist()):
            sub = fig.add_axes([left + (j % cols) * (1 - left) / cols, 0.5 - (j // cols) * 0.45,
                                (1 - left) / cols * 0.9, 0.38])
            title = None
            if labels is not None:
                y = int(labels[i])
                title = classes[y] if classes is not None else str(y)
            draw_image(sub, x[i], title, fontsize=TEXT)
        fig.suptitle(f"{'Sinkhorn codes' if sk else 'nearest prototype'}: cluster #{rank} (prototype {proto}) "
                     f"holds {int(sizes[proto])} images", fontsize=TITLE, y=1.02)
        return to_png(fig)

    return Explorer(controls, render, title="Which images does each prototype gather?")


__all__ = ["cluster_sizes", "prototype_explorer"]
