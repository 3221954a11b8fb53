"""Embedded datasets of sslkit.data: layout, determinism, factors, references, bad input."""
import math

import numpy as np
import pytest
import torch
from matplotlib.path import Path

import sslkit
from sslkit.data import corpus, digits, moving_digits, shapes, waves

EMBEDDED = ["digits", "shapes", "photos", "corpus", "waves", "moving_digits", "spoken_digits"]
REAL = ["cifar10", "stl10", "mnist"]
# small options keep the whole file fast; defaults are covered by benchmarks/data_load_times.py
SMALL = {"digits": {}, "shapes": {"n": 64}, "photos": {"crops": 16, "crop_size": 32},
         "corpus": {}, "waves": {"n": 64}, "moving_digits": {"n": 16, "digits_per_clip": 2},
         "spoken_digits": {}}
LAYOUT = {  # name -> (kind, dtype, sample shape)
    "digits": ("image", torch.uint8, (1, 8, 8)),
    "shapes": ("image", torch.uint8, (3, 32, 32)),
    "photos": ("image", torch.uint8, (3, 32, 32)),
    "corpus": ("text", torch.int64, (64,)),
    "waves": ("signal", torch.float32, (1, 128)),
    "moving_digits": ("clip", torch.uint8, (10, 1, 32, 32)),
    "spoken_digits": ("signal", torch.float32, (1, 4096)),
}


def load(name, split="train", seed=0, **kw):
    return sslkit.data.load(name, split, seed=seed, **{**SMALL[name], **kw})


def test_names_are_the_full_set():
    assert set(sslkit.data.names()) == set(EMBEDDED + REAL)
    assert len(sslkit.data.names()) == len(EMBEDDED + REAL)
    assert set(sslkit.data.names(embedded=True)) == set(EMBEDDED)
    assert set(sslkit.data.names(embedded=False)) == set(REAL)
    assert sslkit.data.info("stl10").splits == ("train", "test", "unlabeled", "train+unlabeled")


@pytest.mark.parametrize("name", EMBEDDED)
def test_layout_labels_factors(name):
    ds = load(name)
    kind, dtype, shape = LAYOUT[name]
    assert ds.kind == kind == sslkit.data.info(name).kind
    assert ds.x.dtype == dtype and ds.sample_shape == shape and ds.x.device.type == "cpu"
    assert ds.labels.dtype == torch.int64 and ds.labels.shape == (len(ds),)
    assert 0 <= ds.labels.min() and ds.labels.max() < ds.num_classes
    assert ds.name == name and ds.split == "train"
    for k, v in ds.factors.items():
        assert v.shape == (len(ds),), k
    for k, values in ds.meta.get("factor_values", {}).items():
        assert 0 <= ds.factors[k].min() and ds.factors[k].max() < len(values)
    assert torch.isfinite(ds.batch(torch.arange(4)).float()).all()


@pytest.mark.parametrize("name", EMBEDDED)
def test_deterministic_by_seed(name):
    a, b, c = load(name, seed=3), load(name, seed=3), load(name, seed=4)
    assert torch.equal(a.x, b.x) and torch.equal(a.labels, b.labels)
    assert all(torch.equal(a.factors[k], b.factors[k]) for k in a.factors)
    assert not torch.equal(a.x, c.x)


@pytest.mark.parametrize("name", [n for n in EMBEDDED if n != "photos"])
def test_train_and_test_differ(name):
    tr, te = load(name, "train"), load(name, "test")
    assert tr.x.shape[1:] == te.x.shape[1:]
    m = min(len(tr), len(te))
    assert not torch.equal(tr.x[:m], te.x[:m])


# -- digits -------------------------------------------------------------------------------------
def test_digits_scaling_and_split_partition_all():
    from sklearn.datasets import load_digits

    ref = load_digits().images  # float 0..16
    full = sslkit.data.load("digits", "all")
    assert full.x.shape == (1797, 1, 8, 8) and full.x.max() == 255
    for i in (0, 100, 1796):  # naive per-pixel scaling
        for r in range(8):
            for c in range(8):
                assert int(full.x[i, 0, r, c]) == int(round(ref[i, r, c] * 255 / 16))
    tr, te = sslkit.data.load("digits", "train", seed=1), sslkit.data.load("digits", "test", seed=1)
    assert len(tr) + len(te) == 1797
    rows = sorted(bytes(v) for v in torch.cat([tr.x, te.x]).flatten(1).numpy())
    assert rows == sorted(bytes(v) for v in full.x.flatten(1).numpy())
    for c in range(10):  # stratified: each class ~20% test
        n_c = int((full.labels == c).sum())
        assert abs(int((te.labels == c).sum()) - 0.2 * n_c) <= 1


@pytest.mark.parametrize("size", [4, 16, 28, 32])
def test_digits_size(size):
    ds = sslkit.data.load("digits", size=size)
    assert ds.sample_shape == (1, size, size)
    const = torch.full((2, 1, 8, 8), 77, dtype=torch.uint8)  # resizing keeps a flat image flat
    assert (digits.resize(const, size) == 77).all()


# -- shapes -------------------------------------------------------------------------------------
def _reference_inside(label, u, v):
    """Point-in-shape with matplotlib polygons / plain distances (independent of shapes._INSIDE)."""
    p = np.stack([u, v], 1)
    r = np.hypot(u, v)
    if label == 0:
        return r <= 1
    if label == 5:
        return (r <= 1) & (r >= 0.6)
    if label == 1:
        poly = [(-.75, -.75), (.75, -.75), (.75, .75), (-.75, .75)]
    elif label == 2:
        poly = [(math.cos(a), math.sin(a)) for a in (math.pi / 2, 7 * math.pi / 6, 11 * math.pi / 6)]
    elif label == 3:
        a, b = 0.3, 1.0
        poly = [(a, b), (a, a), (b, a), (b, -a), (a, -a), (a, -b), (-a, -b), (-a, -a), (-b, -a),
                (-b, a), (-a, a), (-a, b)]
    else:  # star: alternate tips (radius 1, angles 2pi k/5) and inner vertices (radius 0.45)
        poly = [(rad * math.cos(k * math.pi / 5), rad * math.sin(k * math.pi / 5))
                for k, rad in zip(range(10), [1.0, 0.45] * 5)]
    return Path(poly).contains_points(p)


@pytest.mark.parametrize("label", range(6))
def test_shapes_inside_matches_polygon_reference(label):
    g = torch.Generator().manual_seed(label)
    uv = torch.rand(2, 20000, generator=g) * 2.4 - 1.2
    got = shapes._INSIDE[label](uv[0], uv[1])  # the inside-test of shape `label`
    want = _reference_inside(label, uv[0].numpy(), uv[1].numpy())
    assert (got.flatten().numpy() != want).mean() < 0.002  # only points on the boundary may differ


def test_shapes_colour_and_position_factors():
    ds = sslkit.data.load("shapes", n=200, seed=5)
    palette = torch.tensor(list(shapes.PALETTE.values())) * 255
    for i in range(len(ds)):
        lab = int(ds.labels[i])
        r = min(31, int(ds.factors["y"][i] * 32))
        c = min(31, int(ds.factors["x"][i] * 32))
        pix = ds.x[i, :, r, c].float()
        if shapes.CLASSES[lab] == "ring":  # hollow: the centre shows the (dark) background
            assert pix.max() <= 0.45 * 255 + 1
        else:
            assert (pix - palette[ds.factors["colour"][i]]).abs().max() <= 2, (i, lab)
    assert ds.meta["factor_values"]["colour"] == list(shapes.PALETTE)


@pytest.mark.parametrize("label,period", [(1, math.pi / 2), (2, 2 * math.pi / 3), (4, 2 * math.pi / 5),
                                          (3, math.pi / 2)])
def test_shapes_rotation_symmetry(label, period):
    f = dict(label=torch.tensor([label]), colour=torch.tensor([0]), size=torch.tensor([0.3]),
             x=torch.tensor([0.5]), y=torch.tensor([0.5]), background_kind=torch.tensor([0]))
    a = shapes.draw(rotation=torch.tensor([0.3]), image_size=32,
                    generator=torch.Generator().manual_seed(0), **f)
    b = shapes.draw(rotation=torch.tensor([0.3 + period]), image_size=32,
                    generator=torch.Generator().manual_seed(0), **f)
    c = shapes.draw(rotation=torch.tensor([0.3 + period / 2]), image_size=32,
                    generator=torch.Generator().manual_seed(0), **f)
    assert (a.int() - b.int()).abs().float().mean() < 1.0
    assert (a.int() - c.int()).abs().float().mean() > 2.0  # half a period is a different image


def test_shapes_size_option():
    assert sslkit.data.load("shapes", n=8, size=64).sample_shape == (3, 64, 64)
    assert len(sslkit.data.load("shapes", "test")) == 1000


# -- waves --------------------------------------------------------------------------------------
def test_waves_match_naive_formulas():
    ds = sslkit.data.load("waves", n=300, noise=0.0, length=64)
    f, a, p = ds.factors["freq"], ds.factors["amplitude"], ds.factors["phase"]
    for i in range(len(ds)):
        cls = waves.CLASSES[int(ds.labels[i])]
        for t in range(0, 64, 7):
            cyc = float(f[i]) * t / 64 + float(p[i]) / (2 * math.pi)
            frac = cyc % 1.0
            want = {"sine": math.sin(2 * math.pi * cyc), "sawtooth": 2 * frac - 1,
                    "triangle": 1 - 4 * abs(frac - 0.5)}.get(cls)
            if cls == "square" and min(frac, abs(frac - 0.5), 1 - frac) > 1e-4:
                want = 1.0 if frac < 0.5 else -1.0
            if want is not None:
                assert abs(float(ds.x[i, 0, t]) - float(a[i]) * want) < 1e-4, (cls, i, t)
        assert ds.x[i].abs().max() <= a[i] + 1e-5


def test_waves_noise_option_adds_noise():
    clean = sslkit.data.load("waves", n=50, noise=0.0)
    noisy = sslkit.data.load("waves", n=50, noise=0.2)
    assert torch.equal(clean.labels, noisy.labels)
    resid = (noisy.x - clean.x)
    assert 0.15 < resid.std() < 0.25
    assert sslkit.data.load("waves", n=4, length=32).sample_shape == (1, 32)


# -- moving digits ------------------------------------------------------------------------------
def test_trajectories_match_step_by_step_simulation():
    g = torch.Generator().manual_seed(0)
    span = 18.0
    start = torch.rand(50, 2, 2, generator=g) * span
    vel = (torch.rand(50, 2, 2, generator=g) * 2 - 1) * 3
    got = moving_digits.trajectories(start, vel, 30, span)
    for i in range(50):
        for k in range(2):
            for d in range(2):
                p, v = float(start[i, k, d]), float(vel[i, k, d])
                for t in range(30):  # naive: move, and reverse the velocity at a wall
                    assert abs(float(got[i, t, k, d]) - p) < 1e-3, (i, k, d, t)
                    p += v
                    if p < 0:
                        p, v = -p, -v
                    elif p > span:
                        p, v = 2 * span - p, -v


def test_moving_digits_paste_and_motion():
    ds = sslkit.data.load("moving_digits", n=40, frames=12, seed=2)
    assert ds.sample_shape == (12, 1, 32, 32) and "second_digit" not in ds.factors
    checked = 0
    for i in range(len(ds)):
        frames = ds.x[i, :, 0].int()  # (T, 32, 32)
        ys, xs = frames[0].nonzero(as_tuple=True)
        y0, x0 = int(ys.min()), int(xs.min())
        vx, vy = float(ds.factors["velocity_x"][i]), float(ds.factors["velocity_y"][i])
        assert 1.0 - 1e-4 <= math.hypot(vx, vy) <= 3.0 + 1e-4
        for t in range(1, 12):  # every frame is frame 0 shifted: the same digit, pasted whole
            ys, xs = frames[t].nonzero(as_tuple=True)
            dy, dx = int(ys.min()) - y0, int(xs.min()) - x0
            assert torch.equal(frames[t], torch.roll(frames[0], (dy, dx), (0, 1)))
            # ink starts <= 4 px into the 14 px glyph, so the glyph is >= 3 px from the walls
            if t == 1 and 7 <= x0 <= 12 and 7 <= y0 <= 12:  # no bounce in the first step
                assert abs(dx - vx) <= 1.0 + 1e-4 and abs(dy - vy) <= 1.0 + 1e-4
                checked += 1
    assert checked >= 3
    two = sslkit.data.load("moving_digits", n=40, digits_per_clip=2)
    one_ink = ds.x.flatten(1).gt(0).sum(1).float().mean()
    assert two.x.flatten(1).gt(0).sum(1).float().mean() > 1.3 * one_ink
    assert two.factors["second_digit"].max() < 10


def test_moving_digits_bounce_is_a_reflection():
    pos = torch.tensor([-1.0, 0.0, 5.0, 18.0, 19.0, 36.0, 40.0])
    assert moving_digits._bounce(pos, 18.0).tolist() == [1.0, 0.0, 5.0, 18.0, 17.0, 0.0, 4.0]


# -- corpus -------------------------------------------------------------------------------------
def test_corpus_tokenizer_contract():
    ds = sslkit.data.load("corpus")
    tok = ds.tokenizer
    assert tok.vocab[:4] == ["[PAD]", "[MASK]", "[CLS]", "[UNK]"]
    assert (tok.pad_id, tok.mask_id, tok.cls_id, tok.unk_id) == (0, 1, 2, 3)
    assert tuple(tok.special_ids) == (0, 1, 2, 3)
    assert len(tok) == len(tok.vocab) == ds.vocab_size <= 5000
    text = "the value of the object is returned ."
    assert tok.decode(tok.encode(text)) == text
    assert tok.encode("qwertyzzz") == [tok.unk_id]
    assert (ds.x[:, 0] == tok.cls_id).all()
    assert ds.x.max() < len(tok) and ds.x.min() >= 0
    pad = ds.x == tok.pad_id  # padding only at the end of a row
    assert (pad.int().diff(dim=1) >= 0).all()
    assert not (ds.x == tok.unk_id).any()  # the vocabulary is built from train text
    groups = [corpus.GROUPS.index(corpus.TOPIC_GROUPS[t]) for t in ds.meta["factor_values"]["topic"]]
    assert torch.equal(ds.labels, torch.tensor(groups)[ds.factors["topic"]])


def test_corpus_char_level_and_options():
    ds = sslkit.data.load("corpus", level="char", seq_len=40)
    tok = ds.tokenizer
    assert ds.sample_shape == (40,)
    row = ds.x[0]
    text = tok.decode(row)
    assert tok.encode(text) == [i for i in row.tolist() if i not in (tok.pad_id, tok.cls_id)]
    small = sslkit.data.load("corpus", max_vocab=100)
    assert len(small.tokenizer) == 100 and (small.x == 3).any()
    te = sslkit.data.load("corpus", "test")
    assert te.tokenizer.vocab == sslkit.data.load("corpus", "train").tokenizer.vocab
    assert set(te.labels.tolist()) == set(range(len(corpus.GROUPS)))


def test_corpus_seed_only_reorders():
    a, b = sslkit.data.load("corpus", seed=0), sslkit.data.load("corpus", seed=1)
    assert sorted(map(tuple, a.x.tolist())) == sorted(map(tuple, b.x.tolist()))


def test_tokenizer_bad_input():
    with pytest.raises(ValueError, match="level"):
        corpus.Tokenizer.from_text("a b", level="sentence")
    with pytest.raises(ValueError, match="max_vocab"):
        corpus.Tokenizer.from_text("a b", max_vocab=2)
    tok = corpus.Tokenizer.from_text("a b c")
    with pytest.raises(ValueError, match="text"):
        tok.encode(["a"])
    with pytest.raises(ValueError, match="ids"):
        tok.decode([0, 99])


# -- photos -------------------------------------------------------------------------------------
def test_photos_whole_resized_and_crops():
    full = sslkit.data.load("photos")
    assert full.x.shape == (2, 3, 427, 640) and full.classes == ["china", "flower"]
    assert sslkit.data.load("photos", size=224).x.shape == (2, 3, 224, 336)
    ds = sslkit.data.load("photos", crops=10, crop_size=20, seed=3)
    for i in range(10):  # naive slicing reference
        t, l = int(ds.factors["top"][i]), int(ds.factors["left"][i])
        assert torch.equal(ds.x[i], full.x[ds.labels[i], :, t:t + 20, l:l + 20])


# -- bad input ----------------------------------------------------------------------------------
def test_unknown_name_and_split():
    with pytest.raises(ValueError, match="name='nope'.*shapes"):
        sslkit.data.load("nope")
    with pytest.raises(ValueError, match="split='valid'"):
        sslkit.data.load("shapes", "valid")
    with pytest.raises(ValueError, match="name"):
        sslkit.data.info("nope")


@pytest.mark.parametrize("seed", [1.5, "0", True, None])
def test_seed_must_be_int(seed):
    with pytest.raises(ValueError, match="seed"):
        sslkit.data.load("shapes", n=4, seed=seed)


@pytest.mark.parametrize("name,options,arg", [
    ("digits", {"size": 0}, "size"), ("digits", {"size": "big"}, "size"),
    ("digits", {"size": 8.0}, "size"), ("digits", {"test_fraction": 1.0}, "test_fraction"),
    ("shapes", {"size": 0}, "size"), ("shapes", {"size": "big"}, "size"),
    ("shapes", {"n": 0}, "n"), ("shapes", {"n": 2.5}, "n"),
    ("photos", {"size": 0}, "size"), ("photos", {"size": "big"}, "size"),
    ("photos", {"crops": 0}, "crops"), ("photos", {"crops": 4, "crop_size": 1000}, "crop_size"),
    ("corpus", {"level": "sentence"}, "level"), ("corpus", {"seq_len": 1}, "seq_len"),
    ("corpus", {"max_vocab": 3}, "max_vocab"), ("corpus", {"max_vocab": "big"}, "max_vocab"),
    ("waves", {"n": -1}, "n"), ("waves", {"length": 4}, "length"),
    ("waves", {"noise": -0.1}, "noise"), ("waves", {"noise": "lots"}, "noise"),
    ("moving_digits", {"frames": 1}, "frames"), ("moving_digits", {"digits_per_clip": 3}, "digits_per_clip"),
    ("moving_digits", {"n": True}, "n"),
])
def test_bad_options(name, options, arg):
    with pytest.raises(ValueError, match=rf"\b{arg}\b"):
        sslkit.data.load(name, **options)


def test_every_dataset_has_a_card():
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "data"
    readme = (root / "README.md").read_text()
    for name in sslkit.data.names():
        assert (root / "cards" / f"{name}.md").is_file(), name
        assert f"`{name}`" in readme, name


def test_unknown_option_names_option_and_allowed():
    with pytest.raises(ValueError, match=r"sise=32 is not an option of dataset 'shapes'.*n, size"):
        sslkit.data.load("shapes", sise=32)


# -- index checks of Dataset.batch / subset ------------------------------------------------------------
def _tiny():
    from sslkit.data.base import Dataset
    x = torch.arange(5 * 1 * 2 * 2, dtype=torch.uint8).reshape(5, 1, 2, 2)
    return Dataset("tiny", "train", "image", x, torch.arange(5), [str(i) for i in range(5)])


@pytest.mark.parametrize("index, match", [
    (torch.tensor([0.0, 1.0]), "integer"),
    (torch.tensor([0, 5]), r"\[0, 5\]; allowed: \[0, 4\]"),
    (torch.tensor([-6]), r"\[-6, -6\]"),
    (torch.zeros(2, 2, dtype=torch.long), "rank 0 or 1"),
    (torch.ones(4, dtype=torch.bool), r"shape \(5,\)"),
    ("0:2", "index must be"),
])
def test_batch_and_subset_reject_bad_indices(index, match):
    ds = _tiny()
    with pytest.raises(ValueError, match=match):
        ds.batch(index)
    with pytest.raises(ValueError, match=match):
        ds.subset(index)


def test_batch_and_subset_good_indices():
    ds = _tiny()
    assert torch.equal(ds.batch(torch.tensor([4, -1])), ds.x[[4, 4]].float() / 255)
    mask = torch.tensor([True, False, True, False, False])
    assert torch.equal(ds.subset(mask).labels, torch.tensor([0, 2]))
    assert torch.equal(ds.subset(slice(1, 3)).labels, torch.tensor([1, 2]))
    assert torch.equal(ds.subset([3, 0]).labels, torch.tensor([3, 0]))
    assert ds.batch(torch.tensor([], dtype=torch.long)).shape == (0, 1, 2, 2)


def test_registries_mark_loaded_only_after_every_import(monkeypatch):
    from sslkit.data import registry as data_registry
    from sslkit.methods import registry as method_registry
    for module, reg in ((data_registry, data_registry.DATASETS), (method_registry, method_registry.METHODS)):
        monkeypatch.setattr(reg, "loaded", False)
        monkeypatch.setattr(reg, "modules", reg.modules + ("no_such_module",))
        with pytest.raises(ModuleNotFoundError):
            module.names()
        assert reg.loaded is False  # a later call retries (and fails loudly again)
        with pytest.raises(ModuleNotFoundError):
            module.names()
