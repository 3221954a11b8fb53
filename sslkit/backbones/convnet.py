"""A small ConvNet for tiny images (8x8 digits to 32x32 shapes/CIFAR), 1 or 3 channels.

Three stages of two 3x3 conv-BN-ReLU layers; stages 2 and 3 halve the resolution; global average
pooling gives D = ``widths[-1]`` features (128 by default). Adaptive pooling makes any H, W >= 1
work (8x8 -> 2x2 before pooling, 32x32 -> 8x8).
"""
from __future__ import annotations

import torch
from torch import nn

from sslkit import checks


def _conv_bn(c_in: int, c_out: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out),
                         nn.ReLU(inplace=True))


class ConvNet(nn.Module):
    """(B, C, H, W) images -> (B, D) features, D = ``widths[-1]``.

    Args:
        in_channels: 1 (grey) or 3 (RGB).
        widths: channels of the three stages; 32-64-128 trains in minutes on a laptop CPU.
        image_size: accepted for a uniform backbone signature; any size works.
    """

    input_kind = "image"

    def __init__(self, in_channels: int = 3, widths: tuple[int, ...] = (32, 64, 128),
                 image_size: int | None = None) -> None:
        super().__init__()
        self.in_channels = checks.integer("in_channels", in_channels, min=1)
        if not isinstance(widths, (tuple, list)) or len(widths) < 1:
            raise ValueError(f"widths={widths!r} must be a non-empty tuple of ints")
        layers, c = [], in_channels
        for i, w in enumerate(widths):
            checks.integer(f"widths[{i}]", w, min=1)
            stride = 1 if i == 0 else 2   # keep full resolution in stage 1: 8x8 inputs are tiny
            layers += [_conv_bn(c, w, stride), _conv_bn(w, w)]
            c = w
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.embed_dim = int(widths[-1])

    def forward_map(self, x: torch.Tensor) -> torch.Tensor:
        """Spatial feature map (B, D, H', W') before pooling."""
        return self.features(checks.images("x", x, channels=(self.in_channels,)))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.forward_map(x)).flatten(1)                  # (B, D)

    forward = forward_features
