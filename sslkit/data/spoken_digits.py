"""``spoken_digits``: real speech - 3,000 recordings of the words "zero".."nine" by 6 speakers.

The Free Spoken Digit Dataset (FSDD, Zohar Jackson and contributors, CC BY-SA 4.0; see
``data/cards/spoken_digits.md``), bundled with the kit in ``sslkit/data/fsdd/``: every clip cut or
zero-padded to 4,096 samples (0.512 s at 8 kHz) and stored as 8-bit mu-law, xz-compressed in shards
under 1 MiB (``build_spoken_digits.py`` made them; their sha256 are checked on the first load).

    >>> ds = sslkit.data.load("spoken_digits")                               # waves, unseen test speakers
    >>> ds.signals.shape                                                     # float32 (2000, 1, 4096)
    >>> ds = sslkit.data.load("spoken_digits", representation="log_mel")     # (2000, 1, 40, 52) dB
    >>> ds.factors["speaker"], ds.meta["factor_values"]["speaker"]

Splits: ``holdout="speaker"`` (default) tests on two speakers never heard in training - the question
speech recognisers face; ``holdout="random"`` keeps every speaker in both splits (20% of each
digit x speaker cell in test, drawn by ``seed``), which is what a *speaker* probe needs.

Representations: ``"wave"`` is kind ``"signal"`` (B, 1, T) in [-1, 1]; ``"log_mel"`` is kind
``"spectrogram"``: float32 (B, 1, n_mels, frames) in dB from ``sslkit.data.audio.log_mel``. A new
kind rather than ``"image"``: a spectrogram is an image-shaped array, so image backbones and probes
run on it, but image views (colour jitter, crops that stretch frequency, flips that reverse time)
are wrong for it - methods that accept spectrograms say so in ``Method.kinds`` and draw their views
from ``sslkit.pretext.audio`` (SpecAugment masks, time shift, gain).
"""
from __future__ import annotations

import functools
import hashlib
import json
import lzma
from pathlib import Path
from typing import Any

import torch

from sslkit import checks
from sslkit.data import audio
from sslkit.data.base import Dataset
from sslkit.data.registry import register

FILES = Path(__file__).resolve().parent / "fsdd"
CLASSES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
SPLITS = ("train", "test", "all")
REPRESENTATIONS = ("wave", "log_mel")
HOLDOUTS = ("speaker", "random")
# Held-out speakers of holdout="speaker", fixed before any result was measured: one with a US
# accent, one not (FSDD metadata), 1,000 test clips; the other four speakers train.
TEST_SPEAKERS = ("nicolas", "theo")
# From FSDD's metadata.py (all six speak English and are male).
ACCENTS = {"george": "GRC/Greek", "jackson": "USA/neutral", "lucas": "DEU/German",
           "nicolas": "BEL/French", "theo": "USA/neutral", "yweweler": "DEU/German"}
CHUNK = 500   # clips per STFT batch: bounds the complex spectrogram buffer (~30 MB)


class BundleError(RuntimeError):
    """The bundled files are missing or do not match their recorded sha256."""


@functools.lru_cache(maxsize=1)
def bundle() -> tuple[torch.Tensor, dict[str, Any]]:
    """All clips as uint8 mu-law codes (3000, 4096) and the manifest, read once per process.

    Every shard and the decompressed array are checked against the sha256 in ``manifest.json``.
    """
    try:
        manifest = json.loads((FILES / "manifest.json").read_text())
        parts = []
        for shard in manifest["shards"]:
            data = (FILES / shard["file"]).read_bytes()
            if hashlib.sha256(data).hexdigest() != shard["sha256"]:
                raise BundleError(f"{FILES / shard['file']} does not match its sha256 in manifest.json "
                                  f"(corrupted or changed); reinstall sslkit or rebuild the files with "
                                  f"python -m sslkit.data.build_spoken_digits")
            parts.append(data)
    except OSError as err:
        raise BundleError(f"the bundled spoken_digits files are missing from {FILES} ({err}); "
                          f"reinstall sslkit") from err
    raw = lzma.decompress(b"".join(parts))
    if hashlib.sha256(raw).hexdigest() != manifest["array_sha256"]:
        raise BundleError(f"the decompressed spoken_digits array in {FILES} does not match its sha256")
    codes = torch.frombuffer(bytearray(raw), dtype=torch.uint8)
    return codes.view(manifest["clips"], manifest["clip_length"]), manifest


def split_indices(split: str, holdout: str, test_fraction: float, seed: int) -> torch.Tensor:
    """Rows of the bundled array in ``split``: the fixed speaker split or a seeded random split
    stratified by (digit, speaker); "all" is every row in bundle order (speaker, digit, index)."""
    _, m = bundle()
    n = m["clips"]
    if split == "all":
        return torch.arange(n)
    g = torch.Generator().manual_seed(seed % 2**63)
    speaker, digit = torch.tensor(m["speaker"]), torch.tensor(m["digit"])
    if holdout == "speaker":
        held = torch.tensor([m["speakers"].index(s) for s in TEST_SPEAKERS])
        test = torch.isin(speaker, held)
    else:
        test = torch.zeros(n, dtype=torch.bool)
        cell = speaker * len(CLASSES) + digit                 # (N,) one id per digit x speaker cell
        for c in cell.unique().tolist():
            idx = (cell == c).nonzero().flatten()
            idx = idx[torch.randperm(len(idx), generator=g)]
            test[idx[: round(len(idx) * test_fraction)]] = True
    idx = (test if split == "test" else ~test).nonzero().flatten()
    return idx[torch.randperm(len(idx), generator=g)]       # mixed order: a slice is not one speaker


def waves(rows: torch.Tensor, normalize: bool) -> torch.Tensor:
    """float32 (N, 1, 4096) in [-1, 1] of the given bundle rows; ``normalize`` scales each clip to
    peak 1 (the six speakers were recorded ~25 dB apart, a trivial cue otherwise)."""
    codes, _ = bundle()
    x = audio.mu_law_decode(codes[rows]).unsqueeze(1)                       # (N, 1, T)
    if normalize:
        x = x / x.abs().amax(dim=2, keepdim=True).clamp(min=1e-8)
    return x


@register("spoken_digits", kind="signal", splits=SPLITS, embedded=True,
          description="Free Spoken Digit Dataset: 3,000 real recordings of 0-9 by 6 speakers, 8 kHz, "
                      "0.512 s; factors speaker, index, length; option representation='wave' | 'log_mel' "
                      "(kind spectrogram), holdout='speaker' | 'random' (CC BY-SA 4.0)")
def build(split: str, root: str, seed: int, representation: str = "wave", holdout: str = "speaker",
          test_fraction: float = 0.2, normalize: bool = True, n_mels: int = audio.N_MELS) -> Dataset:
    """Build a ``spoken_digits`` split.

    Args:
        split: "train", "test" or "all" (the 3,000 clips in bundle order).
        root: unused (the data ships inside the package).
        seed: order of the clips within a split; for ``holdout="random"`` also which are in test.
        representation: "wave" (kind "signal", float32 (N, 1, 4096)) or "log_mel" (kind
            "spectrogram", float32 (N, 1, n_mels, 52) in dB: 25 ms windows every 10 ms).
        holdout: "speaker" (test = speakers nicolas and theo, 1,000 clips; train = the other four,
            2,000) or "random" (each digit x speaker cell splits ``test_fraction`` into test).
        test_fraction: share of each cell in test for ``holdout="random"``, in (0, 1).
        normalize: scale each clip to peak amplitude 1 before anything else (default True).
        n_mels: mel bands of the "log_mel" representation (8..64 at 8 kHz with a 256-point FFT).
    """
    checks.choice("representation", representation, REPRESENTATIONS)
    checks.choice("holdout", holdout, HOLDOUTS)
    test_fraction = checks.number("test_fraction", test_fraction, min=0, max=1, min_open=True, max_open=True)
    checks.choice("normalize", normalize, (True, False))
    n_mels = checks.integer("n_mels", n_mels, min=8, max=64)
    _, m = bundle()
    rows = split_indices(split, holdout, test_fraction, seed)
    x = waves(rows, normalize)
    kind = "signal"
    if representation == "log_mel":
        x = torch.cat([audio.log_mel(c, n_mels=n_mels) for c in x.split(CHUNK)])  # (N, 1, M, frames)
        kind = "spectrogram"
    factor = {k: torch.tensor(m[k])[rows] for k in ("speaker", "index", "length")}
    return Dataset(
        name="spoken_digits", split=split, kind=kind, x=x.contiguous(),
        labels=torch.tensor(m["digit"])[rows], classes=list(CLASSES), factors=factor,
        meta={"source": "Free Spoken Digit Dataset (Jackson et al.), " + m["source"],
              "licence": "CC BY-SA 4.0 (https://creativecommons.org/licenses/by-sa/4.0/)",
              "credit": "Zohar Jackson, César Souza, Jason Flaks, Yuxin Pan, Hereman Nicolas, Adhish "
                        "Thite and FSDD contributors; cut/padded to 0.512 s and mu-law coded by sslkit",
              "seed": seed, "representation": representation, "holdout": holdout,
              "test_speakers": list(TEST_SPEAKERS) if holdout == "speaker" else None,
              "sample_rate": m["sample_rate"], "normalize": normalize,
              "log_mel": ({"n_mels": n_mels, "n_fft": audio.N_FFT, "win_length": audio.WIN_LENGTH,
                           "hop_length": audio.HOP_LENGTH, "floor_db": audio.FLOOR_DB}
                          if representation == "log_mel" else None),
              "factor_values": {"speaker": list(m["speakers"])},
              "factor_units": {"index": "recording number 0-49 of this speaker and digit",
                               "length": "samples at 8 kHz before cutting / padding to 4096"},
              "accents": dict(ACCENTS)})
