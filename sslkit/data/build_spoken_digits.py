"""Build the bundled ``spoken_digits`` files from the Free Spoken Digit Dataset (run once; the output
is committed under ``sslkit/data/fsdd/``).

    python -m sslkit.data.build_spoken_digits --source ../shared/data/fsdd

What it does to the 3,000 WAV clips (8 kHz, 16-bit mono, ``{digit}_{speaker}_{index}.wav``):

1. cut every clip to ``CLIP_LENGTH`` = 4096 samples (0.512 s): a longer clip keeps the 4096-sample
   window with the most energy (sum of squares), a shorter one is zero-padded equally on both sides;
2. store each sample as an 8-bit mu-law code (``sslkit.data.audio.mu_law_encode``: 255 levels,
   code 127 = silence; 12.3 MB in all);
3. compress the (3000, 4096) uint8 array with xz (LZMA, preset 9 extreme) and cut the stream into
   shards of at most ``SHARD_BYTES`` (every file in git stays under 1 MiB);
4. write ``manifest.json``: the shards with their sha256, the sha256 of the decompressed array and,
   per clip (in array order), digit, speaker, recording index and original length in samples.

Clips are ordered by (speaker, digit, index). The build is deterministic: same source, same bytes.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import lzma
import re
import wave
from pathlib import Path

import numpy as np
import torch

from sslkit.data.audio import MU, SAMPLE_RATE, mu_law_encode

CLIP_LENGTH = 4096        # 0.512 s at 8 kHz: holds 76% of the clips whole; the rest keep their loudest part
SHARD_BYTES = 1_000_000   # < 1 MiB per file (the repository's size check flags larger non-zoo files)
OUT = Path(__file__).resolve().parent / "fsdd"
SOURCE_COMMIT = "26eb9aaf76e81b692f806f9140c2d2777410d7a1"   # Jakobovski/free-spoken-digit-dataset
NAME = re.compile(r"^(\d)_([a-z]+)_(\d+)\.wav$")


def read_wav(path: Path) -> np.ndarray:
    """16-bit mono 8 kHz WAV -> float32 (T,) in [-1, 1)."""
    with wave.open(str(path)) as w:
        if (w.getframerate(), w.getnchannels(), w.getsampwidth()) != (SAMPLE_RATE, 1, 2):
            raise ValueError(f"{path}: expected 8 kHz mono 16-bit, got {w.getframerate()} Hz, "
                             f"{w.getnchannels()} channel(s), {8 * w.getsampwidth()}-bit")
        frames = w.readframes(w.getnframes())
    return np.frombuffer(frames, dtype="<i2").astype(np.float32) / 32768.0


def fit_length(x: np.ndarray, length: int = CLIP_LENGTH) -> np.ndarray:
    """Cut to the ``length``-sample window with the most energy, or zero-pad centred."""
    n = len(x)
    if n <= length:
        left = (length - n) // 2
        return np.pad(x, (left, length - n - left))
    energy = np.concatenate([[0.0], np.cumsum(x.astype(np.float64) ** 2)])
    window = energy[length:] - energy[:-length]            # (n - length + 1,) energy of each window
    start = int(np.argmax(window))                          # the first of equal maxima
    return x[start:start + length]


def build(source: Path, out: Path = OUT) -> dict:
    files = sorted((source / "recordings").glob("*.wav"))
    rows = []
    for f in files:
        m = NAME.match(f.name)
        if m is None:
            raise ValueError(f"{f.name}: not named {{digit}}_{{speaker}}_{{index}}.wav")
        rows.append((m.group(2), int(m.group(1)), int(m.group(3)), f))
    rows.sort(key=lambda r: r[:3])                          # (speaker, digit, index)
    speakers = sorted({r[0] for r in rows})
    clips, lengths = [], []
    for _, _, _, f in rows:
        x = read_wav(f)
        lengths.append(len(x))
        clips.append(fit_length(x))
    codes = mu_law_encode(torch.from_numpy(np.stack(clips))).numpy()   # (N, CLIP_LENGTH) uint8
    raw = codes.tobytes()
    packed = lzma.compress(raw, preset=9 | lzma.PRESET_EXTREME)
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("part-*.xz"):
        old.unlink()
    shards = []
    for i in range(0, len(packed), SHARD_BYTES):
        name = f"part-{i // SHARD_BYTES}.xz"
        chunk = packed[i:i + SHARD_BYTES]
        (out / name).write_bytes(chunk)
        shards.append({"file": name, "bytes": len(chunk), "sha256": hashlib.sha256(chunk).hexdigest()})
    manifest = {
        "format": "uint8 mu-law codes (mu=255, 0..254, 127 = 0.0; sslkit.data.audio.mu_law_decode), "
                  "array [clips, clip_length] row-major, xz-compressed, the stream cut into the "
                  "shards in order (concatenate, then decompress)",
        "source": f"https://github.com/Jakobovski/free-spoken-digit-dataset at commit {SOURCE_COMMIT}",
        "licence": "CC BY-SA 4.0",
        "sample_rate": SAMPLE_RATE, "mu": MU, "clip_length": CLIP_LENGTH, "clips": len(rows),
        "array_sha256": hashlib.sha256(raw).hexdigest(),
        "shards": shards,
        "speakers": speakers,
        # per clip, in array order
        "digit": [r[1] for r in rows],
        "speaker": [speakers.index(r[0]) for r in rows],
        "index": [r[2] for r in rows],
        "length": lengths,
    }
    (out / "manifest.json").write_text(json.dumps(manifest, separators=(",", ":")) + "\n")
    return manifest


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--source", type=Path, required=True, help="the FSDD folder (with recordings/)")
    p.add_argument("--out", type=Path, default=OUT)
    args = p.parse_args()
    m = build(args.source, args.out)
    total = sum(s["bytes"] for s in m["shards"])
    print(f"{m['clips']} clips -> {len(m['shards'])} shards, {total / 1e6:.2f} MB in {args.out}")


if __name__ == "__main__":
    main()
