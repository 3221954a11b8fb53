"""A 1-D convolutional encoder for signals (B, C, T) (the CPC audio encoder, scaled down).

Conv1d-GroupNorm-ReLU layers with strides 2, 2, 1 (T -> T/4 steps). GroupNorm with one group
normalises each sample on its own: BatchNorm would leak information between the samples that CPC
uses as negatives (CPC v2, Henaff et al. 2020, likewise uses layer norm instead of BN).
"""
from __future__ import annotations

import torch
from torch import nn

from sslkit import checks


class Conv1dEncoder(nn.Module):
    """(B, C, T) signals -> (B, D) (``forward_features``, mean over time) or (B, T', D) per step.

    Args:
        in_channels: signal channels.
        widths: channels per layer; D = ``widths[-1]``.
        strides: time stride per layer (total downsampling = product, 4 by default).
        kernel_size: odd kernel length (5 samples: enough context at this sampling).
        length: accepted for a uniform backbone signature; any T >= 1 works.
    """

    def __init__(self, in_channels: int = 1, widths: tuple[int, ...] = (32, 64, 128),
                 strides: tuple[int, ...] = (2, 2, 1), kernel_size: int = 5, length: int | None = None) -> None:
        super().__init__()
        self.in_channels = checks.integer("in_channels", in_channels, min=1)
        kernel_size = checks.integer("kernel_size", kernel_size, min=1)
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size={kernel_size} must be odd (symmetric padding)")
        if len(widths) != len(strides) or len(widths) < 1:
            raise ValueError(f"widths={widths!r} and strides={strides!r} must be non-empty and the same length")
        layers, c = [], in_channels
        for i, (w, s) in enumerate(zip(widths, strides)):
            checks.integer(f"widths[{i}]", w, min=1)
            checks.integer(f"strides[{i}]", s, min=1)
            layers += [nn.Conv1d(c, w, kernel_size, s, kernel_size // 2), nn.GroupNorm(1, w), nn.ReLU(inplace=True)]
            c = w
        self.net = nn.Sequential(*layers)
        self.embed_dim = int(widths[-1])

    def forward_sequence(self, x: torch.Tensor) -> torch.Tensor:
        """Per-step features (B, T', D), T' = T / prod(strides) (rounded up)."""
        checks.tensor("x", x, ndim=3, dtypes="float")
        if x.shape[1] != self.in_channels:
            raise ValueError(f"x has {x.shape[1]} channels (shape {tuple(x.shape)}, expected (B, C, T)); "
                             f"this backbone was built for in_channels={self.in_channels}")
        return self.net(x).transpose(1, 2)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_sequence(x).mean(dim=1)                          # (B, D)

    forward = forward_features
