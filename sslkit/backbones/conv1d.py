"""A causal 1-D convolutional encoder for signals (B, C, T): each step sees only its own window.

Conv1d-norm-ReLU layers whose kernel equals their stride (2, 2, 1 by default), so the layers cut the
signal into non-overlapping windows of ``prod(strides)`` = 4 samples and step ``t`` of the output
reads samples ``[4t, 4t + 4)`` and nothing else (``step_windows`` lists them). The norm is a
LayerNorm over channels *at each step* (CPC v2, Henaff et al. 2020, also uses layer norm): BatchNorm
would mix the samples that CPC uses as negatives, and GroupNorm(1, C) over (C, T) would mix time
steps, so that a change late in the signal moves every step's features.

Why it matters (CPC, van den Oord et al. 2018): the context ``c_t`` must be a summary of the past
only, and a target ``z_{t+k}`` must not share raw samples with it; otherwise "predicting the future"
can be solved by reading it. Here ``c_t`` (a causal GRU over z_1..z_t) reads samples ``[0, 4t + 4)``
and ``z_{t+k}`` reads ``[4(t + k), 4(t + k) + 4)``: disjoint for every k >= 1, with a gap of
``4 (k - 1)`` samples between them.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from sslkit import checks


class StepNorm(nn.Module):
    """LayerNorm over the channels of each time step of (B, C, T): no statistic crosses time."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x.transpose(1, 2)).transpose(1, 2)                  # (B, C, T)


class Conv1dEncoder(nn.Module):
    """(B, C, T) signals -> (B, D) (``forward_features``, mean over time) or (B, S, D) per step.

    Args:
        in_channels: signal channels.
        widths: channels per layer; D = ``widths[-1]``.
        strides: time stride per layer; each layer's kernel equals its stride (non-overlapping
            windows). A step covers ``prod(strides)`` samples (4 by default: 32 steps for T = 128).
        length: accepted for a uniform backbone signature; any T >= ``prod(strides)`` works
            (S = T // prod(strides) steps; trailing samples that do not fill a window are dropped).
    """

    input_kind = "signal"

    def __init__(self, in_channels: int = 1, widths: tuple[int, ...] = (32, 64, 128),
                 strides: tuple[int, ...] = (2, 2, 1), length: int | None = None) -> None:
        super().__init__()
        self.in_channels = checks.integer("in_channels", in_channels, min=1)
        if len(widths) != len(strides) or len(widths) < 1:
            raise ValueError(f"widths={widths!r} and strides={strides!r} must be non-empty and the same length")
        layers, c = [], in_channels
        for i, (w, s) in enumerate(zip(widths, strides)):
            checks.integer(f"widths[{i}]", w, min=1)
            checks.integer(f"strides[{i}]", s, min=1)
            layers += [nn.Conv1d(c, w, kernel_size=s, stride=s), StepNorm(w), nn.ReLU(inplace=True)]
            c = w
        self.net = nn.Sequential(*layers)
        self.embed_dim = int(widths[-1])
        # Samples per step; also the receptive field of one step (the windows do not overlap).
        self.window = math.prod(strides)

    def step_windows(self, length: int) -> list[tuple[int, int]]:
        """The raw samples ``[start, stop)`` that each output step reads, for signals of ``length``."""
        length = checks.integer("length", length, min=self.window)
        return [(t * self.window, (t + 1) * self.window) for t in range(length // self.window)]

    def forward_sequence(self, x: torch.Tensor) -> torch.Tensor:
        """Per-step features (B, S, D), S = T // ``window``; step t reads samples [t w, t w + w)."""
        checks.waves("x", x, self.in_channels, self.window, "one window of prod(strides) samples")
        return self.net(x).transpose(1, 2)                                    # (B, S, D)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_sequence(x).mean(dim=1)                          # (B, D)

    forward = forward_features
