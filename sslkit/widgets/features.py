"""Explorers for evaluating representations (notebooks 05-07): the kNN vote of one test image, and
predicted vs true frames of a clip.

    w = knn_vote_explorer(train, train_feats, test, test_feats)   # pick a test image, k, temperature
    w.controls["k"].value = 5                                      # re-renders: neighbours + vote bars
    w = frame_prediction_explorer(model.predict_next, clips)       # context | truth | prediction
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import ipywidgets as widgets
import numpy as np
import torch
import torch.nn.functional as F

from sslkit import checks
from sslkit.widgets.base import Explorer

NEIGHBOURS_PER_ROW = 5  # the kNN explorer wraps its neighbours: a compact figure, readable at page size
from sslkit.widgets.render import TEXT, TITLE, as_images, draw_image, figure, to_png


def knn_votes(train_feats: torch.Tensor, train_labels: torch.Tensor, query: torch.Tensor, num_classes: int,
              k: int = 20, temperature: float = 0.07) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One query's weighted kNN vote (Wu et al. 2018), laid open.

    Returns the indices (k,) of the k most cosine-similar training items, their similarities (k,)
    and the summed vote per class (num_classes,), each neighbour adding ``exp(sim / T)`` to its class.
    The predicted class is ``votes.argmax()`` - what :func:`sslkit.eval.knn_accuracy` counts.
    """
    checks.tensor("train_feats", train_feats, ndim=2, dtypes="float")
    checks.tensor("train_labels", train_labels, ndim=1, dtypes="int")
    checks.tensor("query", query, ndim=1, dtypes="float")
    if len(train_labels) != len(train_feats) or query.shape[0] != train_feats.shape[1]:
        raise ValueError(f"train_feats {tuple(train_feats.shape)}, train_labels {tuple(train_labels.shape)} and "
                         f"query {tuple(query.shape)} must be (N, D), (N,) and (D,)")
    k = checks.integer("k", k, min=1, max=len(train_feats))
    temperature = checks.number("temperature", temperature, min=0, min_open=True)
    sim = F.normalize(train_feats.float(), dim=1) @ F.normalize(query.float().to(train_feats.device), dim=0)  # (N,)
    top = sim.topk(k)
    votes = torch.zeros(num_classes, device=sim.device)
    votes.index_add_(0, train_labels.to(sim.device)[top.indices], (top.values / temperature).exp())
    return top.indices, top.values, votes


def knn_vote_explorer(train_images: object, train_feats: torch.Tensor, test_images: object,
                      test_feats: torch.Tensor, train_labels: torch.Tensor | None = None,
                      test_labels: torch.Tensor | None = None, classes: Sequence[str] | None = None,
                      k: int = 10, temperature: float = 0.07, index: int = 0, max_shown: int = 10) -> Explorer:
    """A test image, its nearest training images (with labels and similarities) and the class vote.

    Images may be image Datasets (labels and classes are then taken from them) or (B, C, H, W)
    tensors with ``train_labels``/``test_labels`` given. Controls: ``index`` (the test image),
    ``k`` (neighbours that vote) and ``temperature`` (log10 slider: low T = nearest dominates).
    """
    tr_y = train_labels if train_labels is not None else getattr(train_images, "labels", None)
    te_y = test_labels if test_labels is not None else getattr(test_images, "labels", None)
    classes = classes if classes is not None else getattr(train_images, "classes", None)
    xtr, xte = as_images(train_images), as_images(test_images)
    if tr_y is None or te_y is None:
        raise ValueError("train_labels and test_labels are needed when the images are tensors")
    checks.tensor("train_feats", train_feats, ndim=2, dtypes="float")
    checks.tensor("test_feats", test_feats, ndim=2, dtypes="float")
    for name, f, x, y in (("train", train_feats, xtr, tr_y), ("test", test_feats, xte, te_y)):
        if not (len(f) == len(x) == len(y)):
            raise ValueError(f"{name}_feats has {len(f)} rows for {len(x)} {name} images and {len(y)} labels")
    tr_y, te_y = tr_y.long().cpu(), te_y.long().cpu()
    num_classes = int(max(int(tr_y.max()), int(te_y.max()))) + 1
    classes = list(classes) if classes is not None else [str(c) for c in range(num_classes)]
    max_shown = checks.integer("max_shown", max_shown, min=1)
    controls = {
        "index": widgets.IntSlider(value=checks.integer("index", index, min=0, max=len(xte) - 1), min=0,
                                   max=len(xte) - 1, description="test image", continuous_update=False),
        "k": widgets.IntSlider(value=checks.integer("k", k, min=1, max=len(xtr)), min=1, max=min(50, len(xtr)),
                               description="k", continuous_update=False),
        # log10 T in [-2, 0.5]: from "only the nearest counts" to "every neighbour counts the same"
        "temperature": widgets.FloatLogSlider(value=checks.number("temperature", temperature, min=0, min_open=True),
                                              base=10, min=-2, max=0.5, step=0.05, description="temperature",
                                              continuous_update=False),
    }
    feats_cpu = train_feats.detach().float().cpu()
    test_cpu = test_feats.detach().float().cpu()

    def render() -> bytes:
        i, kk, t = controls["index"].value, controls["k"].value, controls["temperature"].value
        idx, sim, votes = knn_votes(feats_cpu, tr_y, test_cpu[i], num_classes, kk, t)
        shown = min(kk, max_shown)
        cols = min(shown, NEIGHBOURS_PER_ROW)                 # neighbours wrap onto rows of 5
        rows = -(-shown // cols)
        fig = figure(0.85 * (cols + 1) + 2.4, 1.25 * rows)   # 0.85 in = 82 page px per image
        grid = fig.add_gridspec(rows, cols + 4, wspace=0.15, hspace=0.55)
        draw_image(fig.add_subplot(grid[0, 0]), xte[i], f"query\n(true: {classes[int(te_y[i])]})", fontsize=TEXT)
        for j in range(shown):
            n = int(idx[j])
            colour = "tab:green" if int(tr_y[n]) == int(te_y[i]) else "tab:red"
            ax = fig.add_subplot(grid[j // cols, 1 + j % cols])
            draw_image(ax, xtr[n], f"{classes[int(tr_y[n])]}\n{float(sim[j]):.2f}", colour, fontsize=TEXT)
            for spine in ax.spines.values():
                spine.set_color(colour)
                spine.set_linewidth(2)
        ax = fig.add_subplot(grid[:, cols + 2:])
        share = (votes / votes.sum()).numpy()
        colours = ["tab:green" if c == int(te_y[i]) else "tab:grey" for c in range(num_classes)]
        ax.barh(np.arange(num_classes), share, color=colours)
        ax.set_yticks(np.arange(num_classes), classes, fontsize=TEXT)
        ax.invert_yaxis()
        ax.set_xlim(0, 1)
        ax.tick_params(axis="x", labelsize=TEXT)
        pred = int(votes.argmax())
        ax.set_title(f"vote share -> {classes[pred]} {'✓' if pred == int(te_y[i]) else '✗'}", fontsize=TITLE)
        return to_png(fig)

    return Explorer(controls, render, title="kNN: the nearest training images vote (green = same class)")


def frame_prediction_explorer(predict_next: Callable[[torch.Tensor], torch.Tensor], clips: torch.Tensor,
                              index: int = 0, context: int | None = None) -> Explorer:
    """Context frames of a clip, the true next frame, the model's prediction and their difference.

    ``predict_next``: ``(B, T, C, H, W) -> (B, C, H, W)`` (e.g. ``NextFrame.predict_next``);
    ``clips``: float (N, T, C, H, W) in [0, 1]. Controls: ``index`` (the clip) and ``context`` (how
    many frames the model sees; the frame after them is the truth).
    """
    checks.tensor("clips", clips, ndim=5, dtypes="float")
    if clips.shape[1] < 2 or clips.shape[2] not in (1, 3):
        raise ValueError(f"clips must be (N, T >= 2, C in (1, 3), H, W); got {tuple(clips.shape)}")
    n, t = clips.shape[:2]
    context = t - 1 if context is None else checks.integer("context", context, min=1, max=t - 1)
    controls = {
        "index": widgets.IntSlider(value=checks.integer("index", index, min=0, max=n - 1), min=0, max=n - 1,
                                   description="clip", continuous_update=False),
        "context": widgets.IntSlider(value=context, min=1, max=t - 1, description="context frames",
                                     continuous_update=False, style={"description_width": "initial"}),
    }

    def render() -> bytes:
        i, c = controls["index"].value, controls["context"].value
        clip = clips[i:i + 1]                                     # (1, T, C, H, W)
        with torch.no_grad():
            pred = predict_next(clip[:, :c]).detach().float().cpu()[0].clamp(0, 1)  # (C, H, W)
        truth = clip[0, c].detach().float().cpu()
        shown = list(range(max(0, c - 4), c))                      # the last (up to) 4 context frames
        panels = [(clip[0, s].cpu(), f"t={s}") for s in shown]
        panels += [(truth, f"truth t={c}"), (pred, "prediction"), ((pred - truth).abs(), "|error|")]
        fig = figure(1.0 * len(panels), 1.3)
        for j, (img, title) in enumerate(panels):
            draw_image(fig.add_subplot(1, len(panels), j + 1), img, title, fontsize=TEXT)
        mse = float((pred - truth).pow(2).mean())
        copy = float((clip[0, c - 1].cpu() - truth).pow(2).mean())
        fig.suptitle(f"MSE prediction {mse:.4f} vs copy-last-frame {copy:.4f}", fontsize=TITLE, y=1.08)
        return to_png(fig)

    return Explorer(controls, render, title="Next-frame prediction vs truth")


__all__ = ["knn_votes", "knn_vote_explorer", "frame_prediction_explorer"]
