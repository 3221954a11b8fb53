"""A frame encoder for clips (B, T, C, H, W): a per-frame ConvNet, then mean pooling over time."""
from __future__ import annotations

import torch
from torch import nn

from sslkit import checks
from sslkit.backbones.convnet import ConvNet


class FrameEncoder(nn.Module):
    """(B, T, C, H, W) clips -> (B, D) features (frame features averaged over time), D = ``widths[-1]``.

    Args:
        in_channels: channels of each frame.
        widths: ConvNet stage widths (see ``convnet``).
        image_size: accepted for a uniform backbone signature; any frame size works.
    """

    input_kind = "clip"

    def __init__(self, in_channels: int = 1, widths: tuple[int, ...] = (32, 64, 128),
                 image_size: int | None = None) -> None:
        super().__init__()
        self.in_channels = checks.integer("in_channels", in_channels, min=1)
        self.frame = ConvNet(in_channels, widths)
        self.embed_dim = self.frame.embed_dim

    def encode_frames(self, clips: torch.Tensor) -> torch.Tensor:
        """Features of every frame, (B, T, D)."""
        checks.tensor("clips", clips, ndim=5, dtypes="float")
        if clips.shape[2] != self.in_channels:
            raise ValueError(f"clips has {clips.shape[2]} channels (shape {tuple(clips.shape)}, expected "
                             f"(B, T, C, H, W)); this backbone was built for in_channels={self.in_channels}")
        b, t = clips.shape[:2]
        return self.frame(clips.flatten(0, 1)).reshape(b, t, -1)

    def forward_features(self, clips: torch.Tensor) -> torch.Tensor:
        return self.encode_frames(clips).mean(dim=1)                       # (B, D)

    forward = forward_features
