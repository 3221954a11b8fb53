"""Rendering helpers for the explorers: tensors -> PNG images that stay sharp where they are shown.

Figures are built with ``matplotlib.figure.Figure`` and the Agg canvas directly, so nothing is
shown twice in a notebook and nothing depends on the notebook's matplotlib backend.

Sharpness: a PNG is rendered with ``SCALE`` pixels per page (CSS) pixel and shown at 1/``SCALE`` of
its pixel size (:func:`display_width`), so it is sharp on HiDPI screens (device pixel ratio 2) and
supersampled on ordinary ones - never stretched by the page. Small images (8-16 px) are enlarged
in the data itself, every pixel a whole block of pixels (:func:`draw_image`), before matplotlib
draws them, instead of letting the page blur a small PNG.
"""
from __future__ import annotations

import io
import struct
from collections.abc import Sequence

import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

SCALE = 2       # PNG pixels per CSS pixel: sharp at device pixel ratio 2, supersampled at 1
CSS_DPI = 96    # CSS pixels per figure inch, the browser's own pt -> px: a 9-pt title is 12 px
DPI = SCALE * CSS_DPI   # 192 PNG pixels per inch (notebooks stay well under 1 MB: a few 20-80 kB PNGs)
TITLE, TEXT = 9, 8      # font sizes (pt) of titles and of labels / legends / ticks: 12 and 10.7 px


def figure(width: float, height: float) -> Figure:
    """A detached matplotlib figure (inches; 1 inch = 96 page pixels) ready for :func:`to_png`."""
    fig = Figure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(fig)
    return fig


def to_png(fig: Figure) -> bytes:
    """PNG bytes of ``fig`` (tight bounding box) at ``DPI``, which the PNG records (its pHYs chunk)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight", pad_inches=0.05)
    return buf.getvalue()


def png_size(png: bytes) -> tuple[int, int, float | None]:
    """(width, height) in pixels and the dots per inch a PNG records (None if it records none)."""
    if png[:8] != b"\x89PNG\r\n\x1a\n" or png[12:16] != b"IHDR":
        raise ValueError("not PNG bytes (they must start with the PNG signature and an IHDR chunk)")
    width, height = struct.unpack(">II", png[16:24])
    pos, dpi = 8, None
    while pos + 8 <= len(png):  # walk the chunks up to the image data: pHYs comes before IDAT
        length, kind = struct.unpack(">I4s", png[pos:pos + 8])
        if kind == b"pHYs" and png[pos + 16] == 1:  # unit 1 = pixels per metre
            dpi = struct.unpack(">I", png[pos + 8:pos + 12])[0] * 0.0254
        if kind in (b"pHYs", b"IDAT"):
            break
        pos += 12 + length
    return width, height, dpi


def display_width(png: bytes) -> int:
    """Width in page (CSS) pixels to show ``png`` at: its inches at ``CSS_DPI``, never wider than
    its own pixels (a PNG of ``to_png`` shows at 1/``SCALE``; a PNG without a dpi at its pixel size)."""
    width, _, dpi = png_size(png)
    if dpi is None or dpi <= CSS_DPI:
        return width
    ratio = round(dpi / CSS_DPI, 3)  # the PNG stores whole pixels per metre: 192 dpi reads 191.9986
    return max(1, int(width / ratio))  # rounded down: at least `ratio` PNG pixels per page pixel


def as_hwc(img: torch.Tensor) -> np.ndarray:
    """(C, H, W) float in [0, 1] (C = 1 or 3) -> (H, W, 3) or (H, W) numpy for ``imshow``."""
    if img.ndim != 3 or img.shape[0] not in (1, 3):
        raise ValueError(f"image must have shape (C, H, W) with C in (1, 3); got {tuple(img.shape)}")
    arr = img.detach().float().clamp(0, 1).cpu()
    return arr[0].numpy() if arr.shape[0] == 1 else arr.permute(1, 2, 0).numpy()


def upscale(img: torch.Tensor, factor: int) -> torch.Tensor:
    """Nearest-neighbour enlargement of (..., H, W) by a whole ``factor``: each pixel a factor x factor block."""
    return img.repeat_interleave(factor, dim=-2).repeat_interleave(factor, dim=-1)


def pixel_factor(ax: Axes, height: int, width: int) -> int:
    """The whole factor that makes an (height, width) image about as large as ``ax`` in PNG pixels."""
    box = ax.get_window_extent()  # in figure pixels; the PNG has DPI / fig.dpi as many
    scale = DPI / ax.figure.dpi
    return max(1, int(min(box.width * scale / width, box.height * scale / height)))


def draw_image(ax: Axes, img: torch.Tensor, title: str | None = None, colour: str = "black",
               fontsize: float = TITLE) -> None:
    """Draw a (C, H, W) image in [0, 1] into ``ax`` with square, sharp pixels and no ticks.

    The data is enlarged first (:func:`upscale` by :func:`pixel_factor`), so matplotlib maps it to
    the PNG almost 1:1 and an 8 x 8 digit shows as 64 crisp blocks, not a smudge.
    """
    hwc = as_hwc(upscale(img, pixel_factor(ax, img.shape[-2], img.shape[-1])))
    ax.imshow(hwc, cmap="gray" if hwc.ndim == 2 else None, vmin=0, vmax=1, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    if title is not None:
        ax.set_title(title, fontsize=fontsize, color=colour)


def image_grid(rows: Sequence[Sequence[torch.Tensor]], titles: Sequence[str] | None = None,
               cell: float = 1.1) -> bytes:
    """PNG of a grid of (C, H, W) images: ``rows[i][j]`` in row i, column j; column titles optional.

    ``cell``: inches per image (1 inch = 96 page pixels), at least 0.8 so small images stay visible.
    """
    cell = max(0.8, float(cell))
    n_rows, n_cols = len(rows), max(len(r) for r in rows)
    fig = figure(cell * n_cols, cell * n_rows + (0.3 if titles else 0))
    for i, row in enumerate(rows):
        for j, img in enumerate(row):
            ax = fig.add_subplot(n_rows, n_cols, i * n_cols + j + 1)
            title = titles[j] if titles and i == 0 and j < len(titles) else None
            draw_image(ax, img, title)
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
