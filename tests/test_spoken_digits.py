"""spoken_digits: the bundled files, the splits, the representations, and bad options."""
from __future__ import annotations

import hashlib
import json
import shutil

import numpy as np
import pytest
import torch

import sslkit
from sslkit.data import audio, build_spoken_digits, spoken_digits


@pytest.fixture(scope="module")
def train():
    return sslkit.data.load("spoken_digits")


@pytest.fixture(scope="module")
def test_split():
    return sslkit.data.load("spoken_digits", split="test")


# -- the bundled files --------------------------------------------------------------------------------
def test_shards_are_small_and_match_their_sha256():
    manifest = json.loads((spoken_digits.FILES / "manifest.json").read_text())
    assert len(manifest["shards"]) >= 2
    total = 0
    for shard in manifest["shards"]:
        data = (spoken_digits.FILES / shard["file"]).read_bytes()
        assert len(data) == shard["bytes"] < 2**20                      # every file under 1 MiB
        assert hashlib.sha256(data).hexdigest() == shard["sha256"]
        total += len(data)
    assert total < 8e6                                                   # the budget in git
    assert sorted(p.name for p in spoken_digits.FILES.iterdir()) == sorted(
        ["manifest.json"] + [s["file"] for s in manifest["shards"]])   # nothing else in the folder


def test_a_corrupted_shard_is_refused(tmp_path, monkeypatch):
    copy = tmp_path / "fsdd"
    shutil.copytree(spoken_digits.FILES, copy)
    data = bytearray((copy / "part-1.xz").read_bytes())
    data[100] ^= 1
    (copy / "part-1.xz").write_bytes(bytes(data))
    monkeypatch.setattr(spoken_digits, "FILES", copy)
    spoken_digits.bundle.cache_clear()
    try:
        with pytest.raises(spoken_digits.BundleError, match="part-1.xz does not match its sha256"):
            spoken_digits.bundle()
        (copy / "part-1.xz").unlink()
        spoken_digits.bundle.cache_clear()
        with pytest.raises(spoken_digits.BundleError, match="missing"):
            spoken_digits.bundle()
    finally:
        spoken_digits.bundle.cache_clear()


def test_bundle_contents():
    codes, m = spoken_digits.bundle()
    assert codes.shape == (3000, 4096) and codes.dtype == torch.uint8
    assert int(codes.max()) <= 254                                       # mid-tread mu-law: 0..254
    digit, speaker = torch.tensor(m["digit"]), torch.tensor(m["speaker"])
    assert m["speakers"] == ["george", "jackson", "lucas", "nicolas", "theo", "yweweler"]
    # 50 recordings (index 0..49) of every digit by every speaker
    cells = torch.bincount(speaker * 10 + digit, minlength=60)
    assert (cells == 50).all()
    assert sorted(zip(m["speaker"], m["digit"], m["index"])) == [
        (s, d, i) for s in range(6) for d in range(10) for i in range(50)]
    short = torch.tensor(m["length"]) <= 4094          # at least one padded sample on each side
    # clips shorter than 4096 samples are zero-padded on both sides: exact silence at both ends
    assert (codes[short][:, 0] == audio.ZERO_CODE).all() and (codes[short][:, -1] == audio.ZERO_CODE).all()


def test_fit_length_cuts_the_loudest_window_and_pads_in_the_middle():
    x = np.zeros(10000, dtype=np.float32)
    x[6000:6100] = 1.0                                                   # a click at 6000..6099
    y = build_spoken_digits.fit_length(x, 4096)
    assert len(y) == 4096 and y.sum() == 100                             # the click is inside the window
    short = np.arange(1, 101, dtype=np.float32)
    y = build_spoken_digits.fit_length(short, 110)
    assert len(y) == 110 and (y[:5] == 0).all() and (y[105:] == 0).all()
    assert (y[5:105] == short).all()


# -- splits -------------------------------------------------------------------------------------------
def test_speaker_split_sizes_counts_and_disjoint_speakers(train, test_split):
    assert train.x.shape == (2000, 1, 4096) and test_split.x.shape == (1000, 1, 4096)
    assert train.kind == test_split.kind == "signal" and train.x.dtype == torch.float32
    names = train.meta["factor_values"]["speaker"]
    train_speakers = {names[i] for i in train.factors["speaker"].unique().tolist()}
    test_speakers = {names[i] for i in test_split.factors["speaker"].unique().tolist()}
    assert test_speakers == set(spoken_digits.TEST_SPEAKERS) == {"nicolas", "theo"}
    assert train_speakers == {"george", "jackson", "lucas", "yweweler"}
    assert (torch.bincount(train.labels, minlength=10) == 200).all()
    assert (torch.bincount(test_split.labels, minlength=10) == 100).all()
    assert train.classes[7] == "seven" and train.num_classes == 10
    assert set(train.factors) == {"speaker", "index", "length"}
    assert train.factors["index"].max() == 49 and train.factors["length"].min() > 0


def test_random_split_keeps_every_speaker_and_depends_on_the_seed():
    tr = sslkit.data.load("spoken_digits", holdout="random")
    te = sslkit.data.load("spoken_digits", split="test", holdout="random")
    assert len(tr) == 2400 and len(te) == 600
    cells = torch.bincount(te.factors["speaker"] * 10 + te.labels, minlength=60)
    assert (cells == 10).all()                                           # 20% of every cell
    key = lambda ds: set(zip(ds.factors["speaker"].tolist(), ds.labels.tolist(), ds.factors["index"].tolist()))
    assert not key(tr) & key(te)                                         # no clip in both
    te1 = sslkit.data.load("spoken_digits", split="test", holdout="random", seed=1)
    assert key(te1) != key(te)
    assert key(sslkit.data.load("spoken_digits", split="test", holdout="speaker", seed=1)) == key(
        sslkit.data.load("spoken_digits", split="test"))                # the speaker split is fixed


def test_deterministic_and_all_split(train):
    again = sslkit.data.load("spoken_digits")
    assert torch.equal(again.x, train.x) and torch.equal(again.labels, train.labels)
    every = sslkit.data.load("spoken_digits", split="all", normalize=False)
    assert len(every) == 3000
    codes, _ = spoken_digits.bundle()
    assert torch.equal(every.x[:, 0], audio.mu_law_decode(codes))


def test_waves_are_peak_normalised_unless_asked(train):
    peaks = train.x.abs().amax(dim=(1, 2))
    torch.testing.assert_close(peaks, torch.ones_like(peaks))
    raw = sslkit.data.load("spoken_digits", normalize=False)
    ratio = raw.x.abs().amax(dim=(1, 2))
    assert ratio.min() < 0.05 < 0.9 < ratio.max()                        # recorded levels differ
    torch.testing.assert_close(raw.x / ratio.view(-1, 1, 1), train.x)


def test_log_mel_representation(train):
    spec = sslkit.data.load("spoken_digits", representation="log_mel")
    assert spec.kind == "spectrogram" and spec.x.shape == (2000, 1, 40, 4096 // 80 + 1)
    assert spec.spectrograms is spec.x and spec.in_channels == 1
    torch.testing.assert_close(spec.x[:8], audio.log_mel(train.x[:8]))
    assert torch.equal(spec.labels, train.labels)
    assert spec.x.min() >= audio.FLOOR_DB and spec.meta["log_mel"]["n_mels"] == 40
    assert sslkit.data.load("spoken_digits", representation="log_mel", n_mels=64).x.shape[2] == 64
    with pytest.raises(AttributeError, match="spectrogram data, not image data"):
        spec.images


@pytest.mark.parametrize("options,match", [
    ({"representation": "mfcc"}, "representation"), ({"holdout": "digit"}, "holdout"),
    ({"test_fraction": 1.0}, "test_fraction"), ({"normalize": "yes"}, "normalize"),
    ({"n_mels": 128}, "n_mels"), ({"length": 8000}, "not an option"),
])
def test_bad_options(options, match):
    with pytest.raises(ValueError, match=match):
        sslkit.data.load("spoken_digits", **options)


def test_registered_and_described():
    assert "spoken_digits" in sslkit.data.names(embedded=True)
    assert "CC BY-SA 4.0" in sslkit.data.info("spoken_digits").description
