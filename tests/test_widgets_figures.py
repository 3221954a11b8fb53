"""Figures a class can read: PNGs shown at half their pixels (sharp on HiDPI screens, never stretched),
small images enlarged in the data with square pixels, and scatter colours that match their legend."""
import io

import matplotlib.colors
import numpy as np
import pytest
import torch
from PIL import Image

from sslkit import widgets as W
from sslkit.widgets import render
from sslkit.widgets.embeddings import scatter_figure


def _pixels(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


def _png(width: int, height: int, dpi: float | None) -> bytes:
    buf = io.BytesIO()
    kwargs = {} if dpi is None else {"dpi": (dpi, dpi)}
    Image.new("RGB", (width, height)).save(buf, format="PNG", **kwargs)
    return buf.getvalue()


def test_png_size_reads_pixels_and_dpi():
    assert render.png_size(_png(30, 20, 96))[:2] == (30, 20)
    assert render.png_size(_png(30, 20, 96))[2] == pytest.approx(96, abs=0.05)
    assert render.png_size(_png(30, 20, None))[2] is None
    with pytest.raises(ValueError, match="not PNG bytes"):
        render.png_size(b"GIF89a" + bytes(30))


@pytest.mark.parametrize("dpi, expected", [(192, 200), (144, 266), (96, 400), (80, 400), (None, 400)])
def test_display_width_never_stretches(dpi, expected):
    # 400 px at 192 dpi is 2.08 in = 200 page px; at or below 96 dpi the PNG shows at its own pixels
    assert W.display_width(_png(400, 100, dpi)) == expected


def test_to_png_renders_twice_the_page_pixels():
    fig = W.figure(3.0, 1.0)
    fig.add_subplot(1, 1, 1).plot([0, 1])
    png = W.to_png(fig)
    width, height, dpi = render.png_size(png)
    assert dpi == pytest.approx(render.DPI, abs=0.1) and render.DPI == render.SCALE * render.CSS_DPI == 192
    assert W.display_width(png) == width // render.SCALE


def test_show_png_displays_at_page_size():
    png = W.image_grid([[torch.rand(1, 8, 8)] * 2], ["a", "b"])
    img = W.show_png(png)
    assert img.width == W.display_width(png) == render.png_size(png)[0] // 2


def _explorers():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(6, 3, 16, 16, generator=g)
    feats = torch.randn(6, 5, generator=g)
    yield "augmentation", W.augmentation_explorer(x, n=2), "colour", 0.0
    yield "masking", W.masking_explorer(x, patch_size=4, n=1), "mask_ratio", 0.25
    yield "temperature", W.temperature_explorer(n=4), "temperature", 0.1
    yield "embedding", W.embedding_explorer(feats, {"label": torch.arange(6) % 3}), "method", "tsne"
    yield "neighbours", W.neighbour_explorer(x, feats, k=5), "index", 2
    yield "attention", W.attention_explorer(x, torch.rand(6, 2, 17, 17).softmax(-1)), "head", "1"
    yield ("knn", W.knn_vote_explorer(x, feats, x, feats, train_labels=torch.arange(6) % 2,
                                      test_labels=torch.arange(6) % 2, k=3), "k", 5)
    yield "frames", W.frame_prediction_explorer(lambda c: c[:, -1], torch.rand(2, 5, 1, 8, 8)), "context", 2


def test_every_explorer_view_has_its_page_width():
    for name, w, control, value in _explorers():
        for _ in range(2):  # as built, then after a move (the figure may change size)
            png = bytes(w.view.value)
            width = render.png_size(png)[0]
            assert w.view.width == str(W.display_width(png)) == str(width // 2), name
            w.controls[control].value = value


def test_draw_image_enlarges_small_images_with_square_pixels():
    # An 8 x 8 checkerboard in a 1-inch axes: 192 PNG pixels, so every pixel becomes a 24 x 24 block
    checker = (torch.arange(8)[:, None] + torch.arange(8)[None, :]) % 2
    fig = W.figure(1.0, 1.0)
    ax = fig.add_axes((0, 0, 1, 1))
    W.draw_image(ax, checker.float()[None])
    data = ax.images[0].get_array()
    assert data.shape == (192, 192)  # enlarged in the data itself, by a whole factor
    assert torch.equal(torch.as_tensor(np.asarray(data))[::24, ::24], checker.float())
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=render.DPI)
    grey = _pixels(buf.getvalue())[..., 0]
    assert set(np.unique(grey[2:-2, 2:-2])) <= {0, 255}  # no blurred in-between greys
    row = grey[12, 3:-3].astype(int)                      # inside the axes frame
    runs = np.diff(np.flatnonzero(np.diff(row)))          # lengths of the inner black/white runs
    assert len(runs) >= 6 and set(runs.tolist()) == {24}


def test_image_grid_titles_are_readable():
    fig_text_pt = render.TITLE
    assert fig_text_pt * render.CSS_DPI / 72 >= 12  # 12 page px titles
    png = W.image_grid([[torch.rand(3, 16, 16)] * 3], ["image", "view 1", "view 2"])
    assert W.display_width(png) >= 3 * 0.8 * render.CSS_DPI * 0.9  # cells of >= 0.8 in (77 px)


def _legend_colours(fig):
    ax = fig.axes[0]
    legend = ax.get_legend()
    drawn = {c.get_label(): matplotlib.colors.to_rgb(c.get_facecolor()[0]) for c in ax.collections}
    shown = {t.get_text(): matplotlib.colors.to_rgb(h.get_facecolor()[0])
             for t, h in zip(legend.get_texts(), legend.legend_handles)}
    return drawn, shown


def test_colour_factor_draws_each_point_in_its_named_colour():
    names = ["red", "green", "blue", "yellow", "magenta", "cyan", "orange", "white"]
    colour = torch.arange(40) % 8
    fig = scatter_figure(torch.randn(40, 2), colour, names, title="by colour")
    drawn, shown = _legend_colours(fig)
    for name in names:
        assert drawn[name] == matplotlib.colors.to_rgb(name), name   # "red" points are red
        assert shown[name] == drawn[name], name                       # and so is the legend's dot
    # each point's own colour is its category's name
    for coll in fig.axes[0].collections:
        assert np.allclose(coll.get_facecolor()[:, :3], matplotlib.colors.to_rgb(coll.get_label()))


def test_other_factors_get_a_palette_that_matches_the_legend():
    names = ["plain", "noise", "stripes", "checker", "gradient"]
    fig = scatter_figure(torch.randn(50, 2), torch.arange(50) % 5, names)
    drawn, shown = _legend_colours(fig)
    assert set(drawn) == set(names) and drawn == shown
    assert len(set(drawn.values())) == 5  # five distinct colours
    # only some categories present: the legend lists those, in the colours they are drawn in
    drawn, shown = _legend_colours(scatter_figure(torch.randn(10, 2), torch.tensor([1, 3] * 5), names))
    assert set(drawn) == {"noise", "checker"} and drawn == shown


def test_rgb_colours_and_many_categories():
    rgb = torch.rand(30, 3)
    fig = scatter_figure(torch.randn(30, 2), rgb)
    assert np.allclose(fig.axes[0].collections[0].get_facecolor()[:, :3], rgb.numpy())
    with pytest.raises(ValueError, match=r"RGB values in \[0, 1\]"):
        scatter_figure(torch.randn(30, 2), rgb * 2)
    fig = scatter_figure(torch.randn(60, 2), torch.arange(60) % 30)  # 30 categories: a colour bar
    assert len(fig.axes) == 2 and fig.axes[0].get_legend() is None
    with pytest.raises(ValueError, match=r"colour \(N,\) or \(N, 3\)"):
        scatter_figure(torch.randn(30, 2), torch.arange(29))
