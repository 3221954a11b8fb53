"""Temperature explorer: how the temperature shapes NT-Xent's softmax over similarities."""
from __future__ import annotations

import ipywidgets as widgets
import torch
import torch.nn.functional as F

from sslkit import checks
from sslkit.widgets.base import Explorer, seed_box, slider
from sslkit.widgets.render import TEXT, TITLE, figure, to_png


def toy_pairs(n: int = 6, dim: int = 8, noise: float = 0.5, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """n positive pairs in ``dim`` dimensions: z2 = z1 + noise * N(0, 1) (small noise = easy positives)."""
    g = torch.Generator().manual_seed(seed)
    z1 = torch.randn(n, dim, generator=g)
    return z1, z1 + noise * torch.randn(n, dim, generator=g)


def similarity_panels(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> bytes:
    """PNG: the (2N, 2N) cosine similarities / T (self-pairs blanked) and their row-wise softmax.

    Row i of the softmax is the distribution NT-Xent puts over the candidates for anchor i; the
    boxed cell is the positive (its partner view). Loss = mean -log of the boxed probabilities.
    """
    from sslkit import losses

    n = z1.shape[0]
    z = F.normalize(torch.cat([z1, z2]).detach().float().cpu(), dim=1)   # (2N, D)
    logits = (z @ z.T / temperature).masked_fill(torch.eye(2 * n, dtype=torch.bool), float("-inf"))
    probs = logits.softmax(dim=1)                                          # (2N, 2N)
    pos = torch.cat([torch.arange(n, 2 * n), torch.arange(n)])             # partner of each row
    loss = losses.nt_xent(z1.detach().float().cpu(), z2.detach().float().cpu(), temperature).item()
    fig = figure(6.4, 3.0)
    shown = (logits.masked_fill(torch.isinf(logits), float("nan")), probs)
    titles = (f"cosine / T  (T = {temperature:.3g})", f"softmax per row; loss = {loss:.3f}")
    for k, (mat, title) in enumerate(zip(shown, titles)):
        ax = fig.add_subplot(1, 2, k + 1)
        im = ax.imshow(mat.numpy(), cmap="viridis", vmin=0 if k else None, vmax=1 if k else None)
        ax.scatter(pos.numpy(), torch.arange(2 * n).numpy(), marker="s", s=40, facecolors="none",
                   edgecolors="red", linewidths=1.2)
        ax.set_title(title, fontsize=TITLE)
        ax.set_xticks([])
        ax.set_yticks([])
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.03).ax.tick_params(labelsize=TEXT)
    fig.text(0.5, 0.0, f"mean p(positive) = {probs[torch.arange(2 * n), pos].mean():.2f}; "
             "red boxes: each row's positive", ha="center", fontsize=TEXT)
    return to_png(fig)


def temperature_explorer(z1: torch.Tensor | None = None, z2: torch.Tensor | None = None, n: int = 6,
                         temperature: float = 0.5, noise: float = 0.5, seed: int = 0) -> Explorer:
    """Slide the temperature (log scale) and watch the softmax sharpen or flatten.

    Without ``z1, z2`` a toy batch of ``n`` pairs is drawn (``toy_pairs``) and the "noise" slider
    changes how different the two views of a pair are; with them, those embeddings are shown.
    """
    temperature = checks.number("temperature", temperature, min=0.0, min_open=True)
    given = z1 is not None or z2 is not None
    if given:
        checks.tensor("z1", z1, ndim=2, dtypes="float")
        checks.tensor("z2", z2, ndim=2, dtypes="float")
        checks.same_shape("z1", z1, "z2", z2)
    controls: dict[str, widgets.Widget] = {
        "temperature": widgets.FloatLogSlider(value=temperature, base=10, min=-2, max=1, step=0.1,
                                              description="temperature", continuous_update=False),
    }
    if not given:
        n = checks.integer("n", n, min=2, max=32)
        controls["noise"] = slider("view noise", checks.number("noise", noise, min=0.0, max=3.0), 0.0, 3.0, 0.1)
        controls["seed"] = seed_box(checks.integer("seed", seed))

    def render() -> bytes:
        if given:
            a, b = z1, z2
        else:
            a, b = toy_pairs(n, 8, controls["noise"].value, controls["seed"].value)
        return similarity_panels(a, b, controls["temperature"].value)

    return Explorer(controls, render, title="Temperature: how sharp is the softmax over candidates?")
