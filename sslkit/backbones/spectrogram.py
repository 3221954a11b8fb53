"""A ConvNet for spectrograms (B, C, F, T) that keeps *which frequencies* sound, not just how much.

The image ``convnet`` ends in global average pooling: fine for images, where an object may be
anywhere, but on a spectrogram it would also average over frequency - a vowel's formants at 500 Hz
and at 2 kHz would look alike. Here the last feature map is averaged over time only, and over
frequency into ``freq_bands`` bands (low to high), so D = ``widths[-1] * freq_bands``. Time stays
shift-invariant (a word may start a little earlier or later), as in keyword-spotting CNNs.
"""
from __future__ import annotations

import torch
from torch import nn

from sslkit import checks
from sslkit.backbones.convnet import ConvNet


class SpectrogramConvNet(ConvNet):
    """(B, C, F, T) spectrograms -> (B, widths[-1] * freq_bands) features.

    Args:
        in_channels: spectrogram channels (1).
        widths: channels of the three stages (stages 2 and 3 halve F and T); 16-32-64 is a quarter
            of the image ConvNet's compute on 40 x 52 log-mels.
        freq_bands: frequency bands kept after pooling (8: each ~5 of 40 mel bands, ~1/3 octave).
        image_size: accepted for a uniform backbone signature; any F >= 1, T >= 1 works.
    """

    input_kind = "spectrogram"

    def __init__(self, in_channels: int = 1, widths: tuple[int, ...] = (16, 32, 64), freq_bands: int = 8,
                 image_size: int | None = None) -> None:
        super().__init__(in_channels, widths, image_size)
        self.freq_bands = checks.integer("freq_bands", freq_bands, min=1)
        # adaptive: any F gives freq_bands rows (rows repeat when F' < freq_bands); T averaged away
        self.pool = nn.AdaptiveAvgPool2d((self.freq_bands, 1))
        self.embed_dim = int(widths[-1]) * self.freq_bands

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.forward_map(x)).flatten(1)                  # (B, D * freq_bands)

    forward = forward_features
