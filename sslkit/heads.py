"""MLP heads built from small specs: projection heads, prediction heads and the DINO head.

    mlp([512, 2048, 128])                                 # Linear-BN-ReLU-Linear
    mlp(MLPSpec(512, (2048,), 128, last_bn=True))         # SimSiam-style projector output BN
    projection_head(512)                                   # SimCLR: 512 -> 2048 -> 128
    prediction_head(256, hidden_dim=1024)                  # BYOL/SimSiam predictor: 256 -> 1024 -> 256
    DINOHead(192, out_dim=1024)                            # MLP -> bottleneck -> L2 norm -> WN linear
    ConvDecoder(128, 3, (32, 32))                          # code (B, D) -> image (B, C, H, W)
"""
from __future__ import annotations

from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass

import math

import torch
import torch.nn.functional as F
from torch import nn

from sslkit import checks
from sslkit.backbones.vit import init_weights


@dataclass(frozen=True)
class MLPSpec:
    """An MLP: ``in_dim -> hidden_dims... -> out_dim``.

    Each hidden layer is Linear -> (BatchNorm1d) -> activation; the output layer is a Linear,
    followed by a BatchNorm1d when ``last_bn`` (SimSiam's projector; BN on the output keeps its
    features well scaled).
    """

    in_dim: int
    hidden_dims: tuple[int, ...]
    out_dim: int
    batch_norm: bool = True      # BN in hidden layers (SimCLR, BYOL, SimSiam heads all use it)
    last_bn: bool = False
    activation: str = "relu"     # "relu" (SimCLR/BYOL) or "gelu" (DINO)

    def __post_init__(self) -> None:
        checks.integer("in_dim", self.in_dim, min=1)
        checks.integer("out_dim", self.out_dim, min=1)
        if not isinstance(self.hidden_dims, (tuple, list)):
            raise ValueError(f"hidden_dims={self.hidden_dims!r} must be a tuple of ints")
        for i, h in enumerate(self.hidden_dims):
            checks.integer(f"hidden_dims[{i}]", h, min=1)
        object.__setattr__(self, "hidden_dims", tuple(self.hidden_dims))
        checks.choice("activation", self.activation, ("relu", "gelu"))


def _spec(spec: MLPSpec | Sequence[int]) -> MLPSpec:
    if isinstance(spec, MLPSpec):
        return spec
    if isinstance(spec, (list, tuple)) and len(spec) >= 2:
        return MLPSpec(spec[0], tuple(spec[1:-1]), spec[-1])
    raise ValueError(f"spec={spec!r} must be an MLPSpec or a list of layer sizes "
                     f"[in_dim, hidden..., out_dim] with at least 2 entries")


class MLP(nn.Sequential):
    """An ``nn.Sequential`` whose forward first checks the input width (a clear ValueError instead
    of a matmul shape error from inside torch). Same layers and state-dict keys as ``nn.Sequential``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        first = self[0] if len(self) else None
        width = getattr(first, "in_features", getattr(first, "num_features", None))
        # BatchNorm1d reads (B, D, L) inputs channel-first, so a BN head takes (B, D) only.
        has_bn = any(isinstance(m, nn.BatchNorm1d) for m in self)
        checks.tensor("x", x, ndim=2 if has_bn else None, dtypes="float")
        if width is not None and x.shape[-1] != width:
            raise ValueError(f"x has last dimension {x.shape[-1]} (shape {tuple(x.shape)}); this head "
                             f"expects in_dim={width}, i.e. input (B, {width})")
        return super().forward(x)


def mlp(spec: MLPSpec | Sequence[int]) -> MLP:
    """The MLP (an ``nn.Sequential``) described by ``spec`` (an :class:`MLPSpec` or ``[in, hidden..., out]``).

    Maps (B, in_dim) -> (B, out_dim); other input widths raise a ValueError.
    """
    s = _spec(spec)
    act = nn.ReLU if s.activation == "relu" else nn.GELU
    layers: list[nn.Module] = []
    dims = (s.in_dim, *s.hidden_dims)
    for a, b in zip(dims[:-1], dims[1:]):
        # No bias before BatchNorm: BN's shift makes it redundant.
        layers.append(nn.Linear(a, b, bias=not s.batch_norm))
        if s.batch_norm:
            layers.append(nn.BatchNorm1d(b))
        layers.append(act())
    layers.append(nn.Linear(dims[-1], s.out_dim, bias=not s.last_bn))
    if s.last_bn:
        layers.append(nn.BatchNorm1d(s.out_dim))
    return MLP(*layers)


def projection_head(in_dim: int, hidden_dim: int = 2048, out_dim: int = 128, num_layers: int = 2,
                    batch_norm: bool = True, last_bn: bool = False) -> MLP:
    """Projector g(h) that maps backbone features to the space the loss is computed in.

    Defaults are SimCLR's 2-layer 2048 -> 128 (Chen et al. 2020). Other papers: BYOL 4096 -> 256,
    SimSiam 3 layers 2048 with ``last_bn=True``, Barlow Twins / VICReg 3 layers 8192 (scaled down for
    the tiny datasets of this kit by the methods' configs). ``num_layers`` counts Linear layers.
    """
    num_layers = checks.integer("num_layers", num_layers, min=1)
    hidden_dim = checks.integer("hidden_dim", hidden_dim, min=1)
    return mlp(MLPSpec(in_dim, (hidden_dim,) * (num_layers - 1), out_dim, batch_norm, last_bn))


def prediction_head(in_dim: int, hidden_dim: int = 512, out_dim: int | None = None) -> MLP:
    """Predictor q(z) of BYOL/SimSiam: a 2-layer bottleneck MLP with BN in the hidden layer.

    ``out_dim`` defaults to ``in_dim`` (it predicts the other branch's projection). BYOL uses
    256 -> 4096 -> 256; SimSiam 2048 -> 512 -> 2048 (the bottleneck matters for SimSiam).
    """
    return mlp(MLPSpec(in_dim, (hidden_dim,), in_dim if out_dim is None else out_dim))


class DINOHead(nn.Module):
    """DINO projection head (Caron et al. 2021, section 3.1 and appendix).

    MLP (GELU; BatchNorm in the hidden layers with ``batch_norm``) -> ``bottleneck_dim`` -> L2-normalise -> weight-normalised Linear to ``out_dim``
    prototypes (no bias). With ``norm_last_layer`` the weight-norm gain is fixed at 1, so the
    last layer is a cosine classifier (DINO reports this stabilises training).

    Maps (B, in_dim) -> (B, out_dim), the last two steps in float32 even under bf16 autocast (the
    logits are sharpened by a small temperature). Defaults are DINO's (65536 prototypes, 2048
    hidden, 256 bottleneck) except ``out_dim``, scaled down to 4096 for tiny datasets with few classes.
    """

    def __init__(self, in_dim: int, out_dim: int = 4096, hidden_dim: int = 2048,
                 bottleneck_dim: int = 256, num_layers: int = 3, norm_last_layer: bool = True,
                 batch_norm: bool = False) -> None:
        super().__init__()
        checks.boolean("batch_norm", batch_norm)
        num_layers = checks.integer("num_layers", num_layers, min=1)
        hidden_dim = checks.integer("hidden_dim", hidden_dim, min=1)
        self.mlp = mlp(MLPSpec(in_dim, (hidden_dim,) * (num_layers - 1), bottleneck_dim,
                               batch_norm=False, activation="gelu"))
        out_dim = checks.integer("out_dim", out_dim, min=1)
        v = torch.empty(out_dim, bottleneck_dim)
        nn.init.trunc_normal_(v, std=0.02)
        self.weight_v = nn.Parameter(v)                   # direction of each prototype
        gain = torch.ones(out_dim, 1)
        if norm_last_layer:
            self.register_buffer("weight_g", gain)        # fixed gain 1: cosine classifier
        else:
            self.weight_g = nn.Parameter(gain)
        self.apply(init_weights)                         # the ViT's: truncated normal, std 0.02
        if batch_norm:   # Linear -> BatchNorm -> GELU hidden layers (the official use_bn_in_head)
            # Built after the plain MLP, so a seed draws the same weights as the runs (and zoo
            # entries) made when DINO swapped this MLP in itself.
            self.mlp = mlp(MLPSpec(in_dim, (hidden_dim,) * (num_layers - 1), bottleneck_dim,
                                   batch_norm=True, activation="gelu"))
            self.mlp.apply(init_weights)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_dim) -> (B, out_dim) logits, float32 (float64 for float64 inputs) even under autocast.

        DINO divides these logits by temperatures down to 0.04 (25x): in bfloat16 (8 bits of
        mantissa) a cosine near 1 is off by up to 0.004, i.e. 0.1 after sharpening, which moves the
        teacher's probabilities by ~10%. So the L2 norm and the prototype layer run in float32.
        """
        h = self.mlp(x)                                                   # (B, bottleneck)
        dev = h.device.type
        with torch.autocast(dev, enabled=False) if torch.amp.is_autocast_available(dev) else nullcontext():
            h = h.float() if h.dtype in (torch.float16, torch.bfloat16) else h
            h = F.normalize(h, dim=-1)                                    # (B, bottleneck)
            weight = self.weight_g * F.normalize(self.weight_v, dim=1)    # (out_dim, bottleneck)
            return F.linear(h, weight.to(h.dtype))                        # (B, out_dim)


class ConvDecoder(nn.Module):
    """(B, D) code -> (B, C, H, W) image in [0, 1]: a linear map to a (2w, H/4, W/4) grid, two
    stride-2 transposed convs (x4 upsampling), a 3x3 conv to C channels and a sigmoid."""

    def __init__(self, in_dim: int, out_channels: int, image_size: tuple[int, int], width: int = 64) -> None:
        super().__init__()
        self.image_size = tuple(image_size)
        self.start = (math.ceil(image_size[0] / 4), math.ceil(image_size[1] / 4))
        self.width = width
        self.fc = nn.Linear(in_dim, 2 * width * self.start[0] * self.start[1])
        self.up = nn.Sequential(
            nn.ConvTranspose2d(2 * width, width, 4, 2, 1), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
            nn.ConvTranspose2d(width, width, 4, 2, 1), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
            nn.Conv2d(width, out_channels, 3, 1, 1))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.fc(z).reshape(z.shape[0], 2 * self.width, *self.start)   # (B, 2w, H/4, W/4)
        out = self.up(h)                                                   # (B, C, ~H, ~W)
        if out.shape[-2:] != self.image_size:                              # sizes not divisible by 4
            out = F.interpolate(out, size=self.image_size, mode="bilinear", align_corners=False)
        return torch.sigmoid(out)
