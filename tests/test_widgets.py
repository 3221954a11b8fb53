"""Widgets, headless: moving a control re-renders the view (new PNG bytes / HTML); bad input raises."""
import ipywidgets
import pytest
import torch

from sslkit import widgets as W
from sslkit.data import Dataset

PNG = b"\x89PNG"


@pytest.fixture(scope="module")
def images():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(4, 3, 16, 16, generator=g)
    x[:, :, 4:12, 4:12] = torch.rand(4, 3, 1, 1, generator=g)  # a coloured square on noise
    return x


def _moves(w, name, value):
    before = w.view.value
    w.controls[name].value = value
    assert w.view.value != before, f"moving {name} to {value!r} did not change the view"
    v = w.view.value
    return v.tobytes() if isinstance(v, memoryview) else v


def test_augmentation_explorer(images):
    w = W.augmentation_explorer(images, n=3, seed=1)
    assert isinstance(w, ipywidgets.VBox) and isinstance(w.view, ipywidgets.Image)
    assert w.view.value.tobytes().startswith(PNG)
    assert w.children[1] is w.view and w.controls["colour"] in w.children[0].children[-1].children
    _moves(w, "colour", 0.0)
    _moves(w, "min_scale", 1.0)
    _moves(w, "gray_p", 1.0)
    before = w.view.value
    w.controls["regenerate"].click()
    assert w.controls["seed"].value == 2 and w.view.value != before
    # The same seed gives the same views (deterministic rendering).
    again = W.augmentation_explorer(images, n=3, seed=1)
    assert again.view.value == W.augmentation_explorer(images, n=3, seed=1).view.value


def test_augmentation_explorer_on_grey_uint8_and_bad_input():
    x = (torch.rand(2, 1, 8, 8) * 255).to(torch.uint8)
    assert W.augmentation_explorer(x, n=2, colour=0.5).view.value.tobytes().startswith(PNG)
    with pytest.raises(ValueError, match="images must be"):
        W.augmentation_explorer(torch.rand(2, 8, 8))
    with pytest.raises(ValueError, match="n=0"):
        W.augmentation_explorer(x, n=0)
    with pytest.raises(ValueError, match="colour=5"):
        W.augmentation_explorer(x, colour=5)


def test_masking_explorer(images):
    w = W.masking_explorer(images, patch_size=4)
    a = _moves(w, "mask_ratio", 0.25)
    _moves(w, "mode", "block")
    assert a.startswith(PNG)
    with pytest.raises(ValueError, match="patch_size=5 must divide"):
        W.masking_explorer(images, patch_size=5)
    with pytest.raises(ValueError, match="mode='grid'"):
        W.masking_explorer(images, mode="grid")


def test_patch_mask_counts(images):
    for mode in ("random", "block"):
        m = W.patch_mask(images, 4, 0.5, mode, torch.Generator().manual_seed(0))
        assert m.shape == (4, 16) and m.dtype == torch.bool and m.sum(1).eq(8).all()


class _Tok:
    vocab = ["[PAD]", "[MASK]", "[CLS]", "[UNK]", "the", "cat", "sat", "on", "mat", "<b>"]
    pad_id, mask_id, cls_id, unk_id = 0, 1, 2, 3
    special_ids = (0, 1, 2, 3)

    def __len__(self):
        return len(self.vocab)

    def decode(self, ids, skip_special=True):
        return " ".join(self.vocab[i] for i in ids)


def _text():
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(4, 10, (5, 12), generator=g)
    ids[:, 0] = 2
    ids[:, -2:] = 0
    return Dataset("toy", "train", "text", ids, torch.zeros(5, dtype=torch.long), ["a"], tokenizer=_Tok())


def test_token_masking_viewer():
    w = W.token_masking_viewer(_text(), n=2, max_len=12)
    assert isinstance(w.view, ipywidgets.HTML)
    html = w.view.value
    assert "[MASK]" in html and "[PAD]" not in html          # padding is not shown
    assert "<b>" not in html and "&lt;b&gt;" in html          # words are HTML-escaped (token 9 is "<b>")
    after = _moves(w, "mask_ratio", 0.6)
    assert after.count("title=\"target:") > html.count("title=\"target:")
    with pytest.raises(ValueError, match="text Dataset"):
        W.token_masking_viewer(torch.zeros(2, 3))


def test_token_masking_html_marks_each_kind():
    ids = torch.tensor([[4, 5, 6, 7]])
    inputs = torch.tensor([[1, 8, 6, 7]])          # [MASK], random, kept-but-chosen, not chosen
    chosen = torch.tensor([[True, True, True, False]])
    html = W.token_masking_html(ids, inputs, chosen, _Tok())
    assert html.count('title="target:') == 3
    assert "mat<sub>(cat)</sub>" in html and 'title="target: sat">sat<' in html


def test_temperature_explorer():
    w = W.temperature_explorer(n=4)
    a = _moves(w, "temperature", 0.05)
    _moves(w, "noise", 2.0)
    assert a.startswith(PNG)
    z1, z2 = W.toy_pairs(3, 4)
    fixed = W.temperature_explorer(z1, z2)
    assert set(fixed.controls) == {"temperature"}
    _moves(fixed, "temperature", 2.0)
    with pytest.raises(ValueError, match="same shape"):
        W.temperature_explorer(z1, z2[:2])
    with pytest.raises(ValueError, match="temperature"):
        W.temperature_explorer(temperature=0)


def test_reconstruction_explorer(images):
    calls = []

    def reconstruct(x, ratio, g):  # a stand-in model: blurs; mask from the kit's masking
        calls.append(ratio)
        mask = W.patch_mask(x, 4, ratio, "random", g)
        return torch.nn.functional.avg_pool2d(x, 3, 1, 1), mask

    w = W.reconstruction_explorer(reconstruct, images, patch_size=4, n=2)
    _moves(w, "mask_ratio", 0.3)
    assert calls == [0.75, 0.3]

    class Model(torch.nn.Module):
        patch_size = 4

        def reconstruct(self, x, ratio, g):
            return reconstruct(x, ratio, g)
    assert W.reconstruction_explorer(Model(), images, n=1).view.value.tobytes().startswith(PNG)

    def three(x, ratio, g):  # the kit's MAE.reconstruct form: (masked, reconstruction, pixel mask)
        pix = torch.rand(len(x), 1, *x.shape[-2:], generator=g) < ratio
        return x.masked_fill(pix, 0), 1 - x, pix
    w = W.reconstruction_explorer(three, images, n=2)
    _moves(w, "mask_ratio", 0.2)
    with pytest.raises(ValueError, match="patch_size is needed"):
        W.reconstruction_explorer(reconstruct, images)
    with pytest.raises(ValueError, match="must be a function"):
        W.reconstruction_explorer(3, images, patch_size=4)


def test_embedding_explorer_and_scatter():
    g = torch.Generator().manual_seed(0)
    feats = torch.randn(40, 6, generator=g)
    labels, other = torch.arange(40) % 4, torch.arange(40) % 2
    w = W.embedding_explorer(feats, {"label": labels, "parity": other}, names={"parity": ["even", "odd"]})
    _moves(w, "colour", "parity")
    _moves(w, "method", "tsne")
    pts = W.project_2d(feats)
    assert pts.shape == (40, 2)
    # PCA: the first axis carries the most variance.
    assert pts[:, 0].var() >= pts[:, 1].var()
    assert W.embedding_scatter(pts, labels, title="x").startswith(PNG)
    with pytest.raises(ValueError, match="colour_by"):
        W.embedding_explorer(feats, {"label": labels[:3]})
    with pytest.raises(ValueError, match="method='umap'"):
        W.project_2d(feats, "umap")


def test_neighbours(images):
    feats = torch.tensor([[1.0, 0], [0.9, 0.1], [0, 1], [-1, 0]])
    idx, sim = W.nearest_neighbours(feats, 0, k=2)
    assert idx.tolist() == [1, 2] and sim[0] > sim[1]
    w = W.neighbour_explorer(images, feats, k=2, labels=torch.arange(4))
    _moves(w, "index", 2)
    with pytest.raises(ValueError, match="feats has 3 rows"):
        W.neighbour_explorer(images, feats[:3])


def test_attention_explorer(images):
    attn = torch.rand(4, 2, 17, 17).softmax(-1)  # 4x4 patches + CLS
    maps = W.attention_maps(attn, (4, 4))
    assert maps.shape == (4, 2, 4, 4) and torch.equal(maps[1, 0, 0], attn[1, 0, 0, 1:5])
    w = W.attention_explorer(images, attn)
    _moves(w, "head", "1")
    _moves(w, "index", 3)
    with pytest.raises(ValueError, match="expected 1 \\+ 3x3"):
        W.attention_maps(attn, (3, 3))


def test_static_fallback_in_mimebundle(images):
    w = W.masking_explorer(images, patch_size=4)
    bundle, metadata = w._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle and "image/png" in bundle
    # the static copy is shown at the widget's page size: half the PNG's pixels (sharp on HiDPI)
    assert metadata["image/png"]["width"] == int(w.view.width) == W.display_width(bytes(w.view.value))
    assert "text/html" in W.token_masking_viewer(_text())._repr_mimebundle_()[0]
