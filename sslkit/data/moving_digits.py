"""``moving_digits``: short clips of 1-2 handwritten digits bouncing inside a 32x32 frame.

A small, offline Moving-MNIST (Srivastava et al., 2015, "Unsupervised Learning of Video
Representations using LSTMs") built from scikit-learn's 8x8 digits upscaled to 14 px. Each digit
moves with a constant velocity and bounces off the walls; overlapping digits combine with ``max``.
For next-frame prediction and frame masking.

Train clips use only digits of the ``digits`` train split and test clips only test-split digits
(same ``seed``), so no digit image is shared between the splits. Label = class of the first digit;
factors ``velocity_x``, ``velocity_y`` = first digit's velocity in pixels per frame, and with
``digits_per_clip=2`` also ``second_digit`` (the second digit's class).
"""
from __future__ import annotations

import math

import torch

from sslkit import checks
from sslkit.data import digits as digits_data
from sslkit.data.base import Dataset
from sslkit.data.registry import register

CANVAS = 32
DIGIT = 14                # digit side in pixels after upscaling 8 -> 14: legible, two fit side by side
SPEED_RANGE = (1.0, 3.0)  # pixels per frame: visible motion, but a digit never jumps past half its size
DEFAULT_N = {"train": 2000, "test": 500}


def _bounce(pos: torch.Tensor, span: float) -> torch.Tensor:
    """Reflect unbounded positions into [0, span] (a triangle wave: the wall bounce, vectorised)."""
    m = pos.remainder(2 * span)
    return span - (m - span).abs()


def trajectories(start: torch.Tensor, velocity: torch.Tensor, frames: int, span: float) -> torch.Tensor:
    """Positions (N, T, K, 2) of points starting at ``start`` (N, K, 2) in [0, span] and moving
    with constant ``velocity`` (N, K, 2) per frame, reflected at 0 and ``span`` (elastic walls)."""
    t = torch.arange(frames, dtype=start.dtype).view(1, frames, 1, 1)
    return _bounce(start[:, None] + velocity[:, None] * t, span)


@register("moving_digits", kind="clip", splits=("train", "test"), embedded=True,
          description="clips (T=10) of 1-2 scikit-learn digits bouncing in a 32x32 frame; label = "
                      "first digit, factors velocity_x, velocity_y")
def build(split: str, root: str, seed: int, n: int | None = None, frames: int = 10,
          digits_per_clip: int = 1) -> Dataset:
    """Generate the ``moving_digits`` split: uint8 (n, frames, 1, 32, 32).

    Args:
        split: "train" or "test" (digit images from the matching ``digits`` split).
        root: unused (generated from scikit-learn's digits).
        n: number of clips (default 2000 train, 500 test).
        frames: clip length T, 2..100.
        digits_per_clip: 1 or 2.
    """
    n = checks.integer("n", DEFAULT_N[split] if n is None else n, min=1, max=200_000)
    frames = checks.integer("frames", frames, min=2, max=100)
    k = checks.integer("digits_per_clip", digits_per_clip, min=1, max=2)
    source = digits_data.build(split=split, root=root, seed=seed, size=DIGIT)
    glyphs, glyph_labels = source.images[:, 0], source.labels  # (M, 14, 14), (M,)

    g = torch.Generator().manual_seed((2 * seed + (split == "test")) % 2**63 + 1)
    pick = torch.randint(len(glyphs), (n, k), generator=g)               # (N, K) source digits
    span = float(CANVAS - DIGIT)                                         # top-left moves in [0, span]
    start = torch.rand(n, k, 2, generator=g) * span                      # (N, K, 2) as (x, y)
    angle = 2 * math.pi * torch.rand(n, k, generator=g)
    speed = SPEED_RANGE[0] + (SPEED_RANGE[1] - SPEED_RANGE[0]) * torch.rand(n, k, generator=g)
    velocity = torch.stack([speed * torch.cos(angle), speed * torch.sin(angle)], -1)  # (N, K, 2)
    pos = trajectories(start, velocity, frames, span).round().long()    # (N, T, K, 2)

    clips = torch.zeros(n, frames, CANVAS, CANVAS, dtype=torch.uint8)
    ar = torch.arange(DIGIT)
    ni = torch.arange(n).view(n, 1, 1, 1)
    ti = torch.arange(frames).view(1, frames, 1, 1)
    for j in range(k):  # paste each digit into every frame of every clip at once
        rows = (pos[:, :, j, 1, None] + ar).unsqueeze(-1)   # (N, T, D, 1)
        cols = (pos[:, :, j, 0, None] + ar).unsqueeze(-2)   # (N, T, 1, D)
        glyph = glyphs[pick[:, j]].unsqueeze(1)             # (N, 1, D, D)
        clips[ni, ti, rows, cols] = torch.maximum(clips[ni, ti, rows, cols], glyph)
    factors = {"velocity_x": velocity[:, 0, 0].contiguous(), "velocity_y": velocity[:, 0, 1].contiguous()}
    if k == 2:
        factors["second_digit"] = glyph_labels[pick[:, 1]]
    return Dataset(name="moving_digits", split=split, kind="clip", x=clips.unsqueeze(2),
                   labels=glyph_labels[pick[:, 0]], classes=list(digits_data.CLASSES),
                   factors=factors,
                   meta={"source": "generated from sklearn.datasets.load_digits",
                         "licence": "CC BY 4.0 (UCI optdigits), generation MIT", "seed": seed,
                         "frames": frames, "digits_per_clip": k, "digit_size": DIGIT,
                         "factor_units": {"velocity_x": "pixels per frame (first digit)",
                                          "velocity_y": "pixels per frame (first digit)"}})
