"""Rendering helpers for the explorers: tensors -> small PNG images, without pyplot's global state.

Figures are built with ``matplotlib.figure.Figure`` and the Agg canvas directly, so nothing is
shown twice in a notebook and nothing depends on the notebook's matplotlib backend.
"""
from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

DPI = 70  # small PNGs: notebooks stay well under 1 MB with a handful of stored images


def figure(width: float, height: float) -> Figure:
    """A detached matplotlib figure (inches) ready for :func:`to_png`."""
    fig = Figure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(fig)
    return fig


def to_png(fig: Figure) -> bytes:
    """PNG bytes of ``fig`` (tight bounding box)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight", pad_inches=0.05)
    return buf.getvalue()


def as_hwc(img: torch.Tensor) -> np.ndarray:
    """(C, H, W) float in [0, 1] (C = 1 or 3) -> (H, W, 3) or (H, W) numpy for ``imshow``."""
    if img.ndim != 3 or img.shape[0] not in (1, 3):
        raise ValueError(f"image must have shape (C, H, W) with C in (1, 3); got {tuple(img.shape)}")
    arr = img.detach().float().clamp(0, 1).cpu()
    return arr[0].numpy() if arr.shape[0] == 1 else arr.permute(1, 2, 0).numpy()


def image_grid(rows: Sequence[Sequence[torch.Tensor]], titles: Sequence[str] | None = None,
               cell: float = 1.1) -> bytes:
    """PNG of a grid of (C, H, W) images: ``rows[i][j]`` in row i, column j; column titles optional."""
    n_rows, n_cols = len(rows), max(len(r) for r in rows)
    fig = figure(cell * n_cols, cell * n_rows + (0.25 if titles else 0))
    for i, row in enumerate(rows):
        for j, img in enumerate(row):
            ax = fig.add_subplot(n_rows, n_cols, i * n_cols + j + 1)
            hwc = as_hwc(img)
            ax.imshow(hwc, cmap="gray" if hwc.ndim == 2 else None, vmin=0, vmax=1,
                      interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if titles and i == 0 and j < len(titles):
                ax.set_title(titles[j], fontsize=8)
    fig.subplots_adjust(wspace=0.05, hspace=0.05)
    return to_png(fig)


def overlay_patches(img: torch.Tensor, mask: torch.Tensor, patch_size: int, shade: float = 0.85
                    ) -> torch.Tensor:
    """Grey out the masked patches of one image: img (C, H, W), mask (N,) bool over the patch grid."""
    c, h, w = img.shape
    grid = mask.reshape(h // patch_size, w // patch_size).to(img.device)
    pixel_mask = grid.repeat_interleave(patch_size, 0).repeat_interleave(patch_size, 1)  # (H, W)
    return torch.where(pixel_mask, torch.full_like(img, shade), img)


def as_images(x: object, n: int | None = None) -> torch.Tensor:
    """Float images (B, C, H, W) in [0, 1] from a float/uint8 tensor or an image ``Dataset``."""
    if hasattr(x, "kind") and hasattr(x, "batch"):
        if x.kind != "image":
            raise ValueError(f"images: dataset {x.name!r} holds {x.kind} data; an image dataset is needed")
        x = x.images[: n if n is not None else len(x.images)]
    if not isinstance(x, torch.Tensor) or x.ndim != 4 or x.shape[1] not in (1, 3):
        got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"images must be (B, C, H, W) with C in (1, 3) or an image Dataset; got {got}")
    x = x[:n] if n is not None else x
    return x.float().div(255) if x.dtype == torch.uint8 else x.float()
