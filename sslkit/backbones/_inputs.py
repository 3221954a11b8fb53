"""Input checks shared by the backbones: clear ValueErrors instead of shape errors deep in torch."""
from __future__ import annotations

import torch

from sslkit import checks


def images(name: str, x: torch.Tensor, in_channels: int) -> torch.Tensor:
    """Float images (B, C, H, W) with C == ``in_channels``."""
    checks.tensor(name, x, ndim=4, dtypes="float")
    if x.shape[1] != in_channels:
        raise ValueError(f"{name} has {x.shape[1]} channels (shape {tuple(x.shape)}); this backbone was "
                         f"built for in_channels={in_channels}")
    return x
