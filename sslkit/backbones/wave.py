"""A wav2vec 2.0-style encoder for raw audio: a strided conv feature encoder, then a Transformer.

Baevski et al. (2020), "wav2vec 2.0", section 2 and appendix B, scaled down for 8 kHz and a CPU:

    wave (B, 1, T) ─ 5 conv layers, strides 5·2·2·2·2 ─> latents z (B, S, C)   one per 10 ms (80 samples)
                   ─ LayerNorm, Linear C -> D ─ [masked frames <- learned mask vector]
                   ─ + conv positional embedding ─ Transformer blocks ─> context c (B, S, D)

The paper's encoder (7 layers, strides 5·2·2·2·2·2·2 at 16 kHz) gives a latent every 20 ms that
sees 25 ms of audio; at 8 kHz five layers give one every 10 ms that sees 20 ms (160 samples), so a
0.512 s clip becomes S = 50 frames. Like the paper, the first layer has a GroupNorm with one group
per channel (each channel normalised over the clip's time axis: insensitive to loudness), the others
none, and there are no conv biases. Positions come from a grouped convolution over the frames
(relative, any length) rather than a table.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from sslkit import checks
from sslkit.backbones.vit import Block, init_weights


class WaveTransformer(nn.Module):
    """(B, C, T) waves -> (B, D) features (``forward_features``: mean of the context over time).

    Args:
        in_channels: audio channels (1: mono).
        conv_width: channels C of the feature encoder (paper: 512; 64 trains on a CPU).
        kernels, strides: per conv layer; a latent frame every ``prod(strides)`` samples.
        embed_dim, depth, num_heads, mlp_ratio: the context Transformer (paper BASE: 768, 12, 12, 4).
        pos_kernel, pos_groups: the convolutional position embedding (paper: 128 frames = 2.56 s,
            16 groups); 31 frames (0.31 s) spans most of a spoken digit.
        length: accepted for a uniform backbone signature; any T >= ``receptive_field`` works.
    """

    input_kind = "signal"

    def __init__(self, in_channels: int = 1, conv_width: int = 64, kernels: tuple[int, ...] = (10, 3, 3, 3, 3),
                 strides: tuple[int, ...] = (5, 2, 2, 2, 2), embed_dim: int = 128, depth: int = 4,
                 num_heads: int = 4, mlp_ratio: float = 4.0, pos_kernel: int = 31, pos_groups: int = 16,
                 length: int | None = None) -> None:
        super().__init__()
        self.in_channels = checks.integer("in_channels", in_channels, min=1)
        conv_width = checks.integer("conv_width", conv_width, min=1)
        self.embed_dim = checks.integer("embed_dim", embed_dim, min=1)
        checks.integer("depth", depth, min=1)
        checks.integer("num_heads", num_heads, min=1)
        if self.embed_dim % num_heads:
            raise ValueError(f"embed_dim={embed_dim} must be divisible by num_heads={num_heads}")
        pos_kernel = checks.integer("pos_kernel", pos_kernel, min=1)
        if pos_kernel % 2 == 0:
            raise ValueError(f"pos_kernel={pos_kernel} must be odd (a frame sees as many frames before as after)")
        checks.integer("pos_groups", pos_groups, min=1)
        if self.embed_dim % pos_groups:
            raise ValueError(f"embed_dim={embed_dim} must be divisible by pos_groups={pos_groups}")
        if len(kernels) != len(strides) or len(kernels) < 1:
            raise ValueError(f"kernels={kernels!r} and strides={strides!r} must be non-empty and the same length")
        layers: list[nn.Module] = []
        c = in_channels
        for i, (k, s) in enumerate(zip(kernels, strides)):
            checks.integer(f"kernels[{i}]", k, min=1)
            checks.integer(f"strides[{i}]", s, min=1)
            layers.append(nn.Conv1d(c, conv_width, k, s, bias=False))
            if i == 0:
                layers.append(nn.GroupNorm(conv_width, conv_width))
            layers.append(nn.GELU())
            c = conv_width
        self.feature_encoder = nn.Sequential(*layers)
        self.kernels, self.strides = tuple(kernels), tuple(strides)
        self.hop = math.prod(strides)                                   # samples per latent frame
        # samples one latent frame sees: 1 + sum_i (k_i - 1) * (product of the strides before layer i)
        self.receptive_field = 1 + sum((k - 1) * math.prod(strides[:i]) for i, k in enumerate(kernels))
        self.latent_dim = conv_width
        self.feature_norm = nn.LayerNorm(conv_width)
        self.proj = nn.Linear(conv_width, embed_dim)
        self.mask_embedding = nn.Parameter(torch.empty(embed_dim).uniform_())   # as the official code
        self.pos_conv = nn.Conv1d(embed_dim, embed_dim, pos_kernel, padding=pos_kernel // 2, groups=pos_groups)
        self.blocks = nn.ModuleList(Block(embed_dim, num_heads, mlp_ratio) for _ in range(depth))
        self.norm = nn.LayerNorm(embed_dim)
        self.apply(init_weights)

    def num_frames(self, length: int) -> int:
        """Latent frames S for waves of ``length`` samples."""
        s = checks.integer("length", length, min=self.receptive_field)
        for k, st in zip(self.kernels, self.strides):
            s = (s - k) // st + 1
        return s

    def latents(self, x: torch.Tensor) -> torch.Tensor:
        """The feature encoder's frames z (B, S, C), layer-normalised (the targets of wav2vec)."""
        checks.waves("x", x, self.in_channels, self.receptive_field, "the samples one latent frame sees")
        return self.feature_norm(self.feature_encoder(x).transpose(1, 2))       # (B, S, C)

    def context(self, z: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """The Transformer over latents z (B, S, C) -> (B, S, D); frames where ``mask`` (B, S) is
        True are replaced by the learned mask vector first."""
        h = self.proj(z)                                                        # (B, S, D)
        if mask is not None:
            checks.tensor("mask", mask, ndim=2, dtypes=(torch.bool,))
            if tuple(mask.shape) != tuple(h.shape[:2]):
                raise ValueError(f"mask has shape {tuple(mask.shape)}; allowed: (B, S) = {tuple(h.shape[:2])}")
            h = torch.where(mask[..., None], self.mask_embedding.to(h.dtype), h)
        h = h + F.gelu(self.pos_conv(h.transpose(1, 2))).transpose(1, 2)       # relative positions
        for blk in self.blocks:
            h, _ = blk(h)
        return self.norm(h)                                                     # (B, S, D)

    def forward_sequence(self, x: torch.Tensor) -> torch.Tensor:
        """Context features per frame (B, S, D), nothing masked."""
        return self.context(self.latents(x))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_sequence(x).mean(dim=1)                             # (B, D)

    forward = forward_features
