"""Building blocks for looking at representations: 2-D embedding scatter, nearest-neighbour
retrieval, and ViT attention maps."""
from __future__ import annotations

from collections.abc import Sequence

import ipywidgets as widgets
import matplotlib
import matplotlib.colors
import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure

from sslkit import checks
from sslkit.widgets.base import Explorer
from sslkit.widgets.render import (TEXT, TITLE, as_images, draw_image, figure, image_grid, pixel_factor, to_png,
                                   upscale)


def project_2d(feats: torch.Tensor, method: str = "pca", seed: int = 0) -> np.ndarray:
    """(N, D) features -> (N, 2) with PCA (top-2 principal components) or t-SNE (scikit-learn)."""
    checks.tensor("feats", feats, ndim=2, dtypes="float")
    checks.choice("method", method, ["pca", "tsne"])
    x = feats.detach().float().cpu()
    x = x - x.mean(dim=0, keepdim=True)
    if method == "pca":
        _, _, vh = torch.linalg.svd(x, full_matrices=False)
        return (x @ vh[:2].T).numpy()
    from sklearn.manifold import TSNE
    perplexity = float(min(30, max(2, (len(x) - 1) // 3)))  # t-SNE needs perplexity < N
    # Exact t-SNE is O(N^2) but single-threaded and fast for the few hundred points we plot;
    # Barnes-Hut's OpenMP threads crawl on busy small machines.
    exact = len(x) <= 1000
    return TSNE(2, perplexity=perplexity, init="pca", random_state=seed,
                method="exact" if exact else "barnes_hut").fit_transform(x.numpy())


def embedding_scatter(points: np.ndarray | torch.Tensor, colour: torch.Tensor | np.ndarray,
                      names: Sequence[str] | None = None, title: str = "", size: float = 3.2) -> bytes:
    """PNG of :func:`scatter_figure`: (N, 2) points coloured by a label, a factor or their own RGB."""
    return to_png(scatter_figure(points, colour, names, title, size))


def scatter_figure(points: np.ndarray | torch.Tensor, colour: torch.Tensor | np.ndarray,
                   names: Sequence[str] | None = None, title: str = "", size: float = 3.2) -> Figure:
    """Scatter of (N, 2) points, coloured so that what is drawn is what the legend says.

    ``colour`` is either (N,) integer categories (a label or a factor; legend from ``names``) or
    (N, 3) RGB in [0, 1], each point drawn in its own colour. Categories whose names are all colours
    ("red", "white", ...: the ``colour`` factor of ``shapes``) are drawn in those very colours, with
    a thin dark edge on a light grey background so white and yellow show; other categories take a qualitative palette (tab10,
    tab20) and more than 20 the viridis scale with a colour bar. Each legend entry is drawn from
    its own points' style.
    """
    pts = points.detach().cpu().numpy() if isinstance(points, torch.Tensor) else np.asarray(points)
    c = colour.detach().cpu().numpy() if isinstance(colour, torch.Tensor) else np.asarray(colour)
    if pts.ndim != 2 or pts.shape[1] != 2 or len(c) != len(pts) or c.ndim not in (1, 2):
        raise ValueError(f"points must be (N, 2) and colour (N,) or (N, 3); got {pts.shape} and {c.shape}")
    fig = figure(size, size)
    ax = fig.add_subplot(1, 1, 1)
    dot = dict(s=12, linewidths=0)  # 12 pt^2: a ~5 px dot on the page
    if c.ndim == 2:                 # (N, 3): every point in its own colour
        if c.shape[1] != 3 or not np.all((c >= 0) & (c <= 1)):
            raise ValueError(f"colour (N, 3) must hold RGB values in [0, 1]; got shape {c.shape}, "
                             f"range [{c.min():.3g}, {c.max():.3g}]")
        ax.set_facecolor("0.85")
        ax.scatter(pts[:, 0], pts[:, 1], c=c, **{**dot, "edgecolors": "0.3", "linewidths": 0.3})
    else:
        values = np.unique(c)
        labels = [names[int(v)] if names is not None and 0 <= int(v) < len(names) else str(v) for v in values]
        if all(matplotlib.colors.is_color_like(label) for label in labels):
            colours = [matplotlib.colors.to_rgb(label) for label in labels]  # "red" is drawn red
            ax.set_facecolor("0.85")
            dot.update(edgecolors="0.3", linewidths=0.3)  # white and yellow dots stay visible
        elif len(values) <= 20:
            cmap = matplotlib.colormaps["tab10" if len(values) <= 10 else "tab20"]
            colours = [cmap(k) for k in range(len(values))]
        else:                           # too many categories for distinct hues: an ordered scale
            colours = None
        if colours is None:
            sc = ax.scatter(pts[:, 0], pts[:, 1], c=np.searchsorted(values, c), cmap="viridis", **dot)
            bar = fig.colorbar(sc, ax=ax, fraction=0.046, pad=0.03)
            ticks = np.linspace(0, len(values) - 1, min(5, len(values))).round().astype(int)
            bar.set_ticks(ticks, labels=[labels[t] for t in ticks], fontsize=TEXT)
        else:
            for v, label, rgb in zip(values, labels, colours):
                sel = c == v
                ax.scatter(pts[sel, 0], pts[sel, 1], color=rgb, label=label, **dot)
            ax.legend(fontsize=TEXT, markerscale=1.5, loc="center left", bbox_to_anchor=(1.0, 0.5),
                      frameon=False, handletextpad=0.2, labelspacing=0.3)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title, fontsize=TITLE)
    return fig


def embedding_explorer(feats: torch.Tensor, colour_by: dict[str, torch.Tensor],
                       names: dict[str, Sequence[str]] | None = None, method: str = "pca", seed: int = 0
                       ) -> Explorer:
    """2-D map of features; choose the projection (PCA / t-SNE) and what colours the points
    (``colour_by``: name -> (N,) ints, e.g. {"label": ds.labels, "colour": ds.factors["colour"]})."""
    checks.tensor("feats", feats, ndim=2, dtypes="float")
    if not colour_by:
        raise ValueError("colour_by must name at least one (N,) labelling, e.g. {'label': labels}")
    for k, v in colour_by.items():
        if len(v) != len(feats):
            raise ValueError(f"colour_by[{k!r}] has {len(v)} entries for {len(feats)} features")
    names = names or {}
    cache: dict[str, np.ndarray] = {}
    controls = {
        "colour": widgets.Dropdown(options=list(colour_by), description="colour by"),
        "method": widgets.ToggleButtons(options=["pca", "tsne"], value=checks.choice("method", method, ["pca", "tsne"]),
                                        style={"button_width": "60px"}),
    }

    def render() -> bytes:
        m, key = controls["method"].value, controls["colour"].value
        if m not in cache:
            cache[m] = project_2d(feats, m, seed)
        return embedding_scatter(cache[m], colour_by[key], names.get(key), title=f"{m.upper()} coloured by {key}")

    return Explorer(controls, render, title="Where does each sample land?")


def nearest_neighbours(feats: torch.Tensor, index: int, k: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices (k,) and cosine similarities (k,) of the k items most similar to ``feats[index]`` (itself excluded)."""
    z = F.normalize(feats.detach().float(), dim=1)  # (N, D)
    sim = z @ z[index]                               # (N,)
    sim[index] = float("-inf")
    top = sim.topk(min(k, len(z) - 1))
    return top.indices, top.values


def neighbour_explorer(images: object, feats: torch.Tensor, k: int = 5, index: int = 0,
                       labels: torch.Tensor | None = None) -> Explorer:
    """Pick a query image (slider); see its k nearest neighbours in feature space (cosine)."""
    x = as_images(images)
    checks.tensor("feats", feats, ndim=2, dtypes="float")
    if len(feats) != len(x):
        raise ValueError(f"feats has {len(feats)} rows for {len(x)} images")
    k = checks.integer("k", k, min=1, max=min(16, len(x) - 1))
    controls = {"index": widgets.IntSlider(value=checks.integer("index", index, min=0, max=len(x) - 1), min=0,
                                           max=len(x) - 1, description="query", continuous_update=False)}

    def render() -> bytes:
        i = controls["index"].value
        idx, sim = nearest_neighbours(feats, i, k)
        titles = ["query" + (f" ({int(labels[i])})" if labels is not None else "")]
        titles += [f"{s:.2f}" + (f" ({int(labels[j])})" if labels is not None else "") for j, s in
                   zip(idx.tolist(), sim.tolist())]
        return image_grid([[x[i], *[x[j] for j in idx.tolist()]]], titles)

    return Explorer(controls, render, title="Nearest neighbours (cosine similarity)")


def attention_maps(attn: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """(B, heads, T, T) attention with a CLS token first -> (B, heads, h, w) CLS-to-patch maps."""
    checks.tensor("attn", attn, ndim=4, dtypes="float")
    if attn.shape[-1] != grid[0] * grid[1] + 1:
        raise ValueError(f"attn has {attn.shape[-1]} tokens; expected 1 + {grid[0]}x{grid[1]} patches")
    return attn[:, :, 0, 1:].reshape(*attn.shape[:2], *grid)


def attention_explorer(images: object, attn: torch.Tensor, index: int = 0) -> Explorer:
    """Where the CLS token looks: per head, the attention over patches overlaid on the image.

    ``attn``: (B, heads, T, T) from e.g. ``vit.forward_features(x, return_attention=True)[1]``.
    """
    x = as_images(images)
    checks.tensor("attn", attn, ndim=4, dtypes="float")
    if len(attn) != len(x):
        raise ValueError(f"attn has {len(attn)} maps for {len(x)} images")
    side = int(round((attn.shape[-1] - 1) ** 0.5))
    H, W = x.shape[-2:]
    grid = (side, side) if H == W else (side, (attn.shape[-1] - 1) // side)
    maps = attention_maps(attn.detach().float().cpu(), grid)  # (B, heads, h, w)
    controls = {"index": widgets.IntSlider(value=checks.integer("index", index, min=0, max=len(x) - 1), min=0,
                                           max=len(x) - 1, description="image", continuous_update=False),
                "head": widgets.Dropdown(options=["mean"] + [str(h) for h in range(maps.shape[1])],
                                         description="head")}

    def render() -> bytes:
        i, head = controls["index"].value, controls["head"].value
        m = maps[i].mean(0) if head == "mean" else maps[i, int(head)]
        head_text = "mean of heads" if head == "mean" else f"head {head}"
        fig = figure(4.4, 2.3)
        for k, show_map in enumerate((False, True)):
            ax = fig.add_subplot(1, 2, k + 1)
            draw_image(ax, x[i].cpu(), "image" if not show_map else f"CLS attention ({head_text})")
            if show_map:  # the patch grid enlarged to the image's drawn pixels: one block per patch
                ax.imshow(upscale(m, pixel_factor(ax, *m.shape)).numpy(), cmap="inferno", alpha=0.6,
                          extent=ax.images[0].get_extent(), interpolation="nearest")
        return to_png(fig)

    return Explorer(controls, render, title="ViT attention maps")
