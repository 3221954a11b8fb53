"""Input checks shared by the backbones: clear ValueErrors instead of shape errors deep in torch."""
from __future__ import annotations

import torch

from sslkit import checks


def images(name: str, x: torch.Tensor, in_channels: int) -> torch.Tensor:
    """Float images (B, C, H, W) with C == ``in_channels`` (:func:`sslkit.checks.images`)."""
    return checks.images(name, x, channels=(in_channels,))
