"""Denoising / inpainting autoencoder: corrupt an image, encode it, decode the clean image.

Vincent, Larochelle, Bengio & Manzagol (2008), "Extracting and Composing Robust Features with
Denoising Autoencoders"; Pathak et al. (2016), "Context Encoders: Feature Learning by Inpainting".

    x ─ corrupt (noise / salt & pepper / holes / none) ─ backbone ─> h (B, D) ─ ConvDecoder ─> x_hat
    loss = MSE(x_hat, x)   (the *clean* image)

The code h is the backbone's pooled feature vector - a bottleneck - so even ``corruption="none"``
(a plain autoencoder) cannot just copy pixels. Evaluation uses h.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from sslkit import checks, heads, pretext
from sslkit.methods.base import Method, default_backbone, keep_layout, make_config
from sslkit.methods.registry import register

CORRUPTIONS = ("gaussian", "salt_pepper", "inpaint", "none")


@dataclass
class AutoencoderConfig:
    # How the input is corrupted: "gaussian" (denoising), "salt_pepper", "inpaint" (holes), "none".
    corruption: str = "gaussian"
    # Gaussian noise std on [0, 1] images: 0.3 hides fine detail but keeps the shape recognisable.
    noise_std: float = 0.3
    # Salt-and-pepper: fraction of pixels set to 0 or 1 (0.2: one pixel in five).
    amount: float = 0.2
    # Inpainting: number of square holes and their side as a fraction of the image side.
    n_holes: int = 1
    hole_size: float = 0.4
    # Decoder channels (the decoder is discarded after training; 64 is plenty for <= 32 px).
    decoder_width: int = 64
    # Image side and channels when no data is given (otherwise taken from the data).
    image_size: int = 32
    in_channels: int = 3

    def __post_init__(self) -> None:
        checks.choice("corruption", self.corruption, CORRUPTIONS)
        checks.number("noise_std", self.noise_std, min=0.0)
        checks.number("amount", self.amount, min=0.0, max=1.0)
        checks.integer("n_holes", self.n_holes, min=1)
        checks.number("hole_size", self.hole_size, min=0.0, max=1.0, min_open=True)
        checks.integer("decoder_width", self.decoder_width, min=1)
        checks.integer("image_size", self.image_size, min=1)
        checks.integer("in_channels", self.in_channels, min=1)


class Autoencoder(Method):
    name = "autoencoder"
    kinds = ("image",)
    default_lr = 1e-3  # AdamW

    def __init__(self, backbone: nn.Module, config: AutoencoderConfig, image_shape: tuple[int, int, int]) -> None:
        super().__init__(backbone)
        self.config = config
        self.image_shape = tuple(image_shape)                              # (C, H, W)
        self.decoder = heads.ConvDecoder(backbone.embed_dim, image_shape[0], image_shape[1:], config.decoder_width)

    def corrupt(self, x: torch.Tensor, generator: torch.Generator | None = None
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(corrupted, hole_mask or None)`` for images ``x`` (B, C, H, W)."""
        c = self.config
        if c.corruption == "gaussian":
            return pretext.gaussian_corrupt(x, c.noise_std, generator=generator), None
        if c.corruption == "salt_pepper":
            return pretext.salt_and_pepper(x, c.amount, generator=generator), None
        if c.corruption == "inpaint":
            return pretext.inpaint_holes(x, c.n_holes, c.hole_size, generator=generator)
        return x, None

    def _check(self, x: Any, name: str) -> torch.Tensor:
        checks.tensor(name, x, ndim=4, dtypes="float")
        if tuple(x.shape[1:]) != self.image_shape:
            raise ValueError(f"{name} has shape {tuple(x.shape)}; this autoencoder was built for "
                             f"images of shape (B, {', '.join(map(str, self.image_shape))})")
        return x

    def training_step(self, batch: torch.Tensor) -> dict[str, torch.Tensor]:
        x = self._check(checks.images("batch", batch, min_batch=2), "batch")                      # (B, C, H, W)
        corrupted, holes = self.corrupt(x)
        corrupted = keep_layout(corrupted, x)                              # channels-last stays so
        rec = self.decoder(self.backbone.forward_features(corrupted))      # (B, C, H, W)
        loss = F.mse_loss(rec, x)
        # PSNR in dB of reconstruction and of the corrupted input (the bar to beat), for the logs.
        with torch.no_grad():
            psnr = -10 * torch.log10(loss.detach().clamp_min(1e-10))
            psnr_input = -10 * torch.log10(F.mse_loss(corrupted, x).clamp_min(1e-10))
        out = {"loss": loss, "psnr": psnr, "psnr_input": psnr_input}
        if holes is not None:  # error inside the holes: what inpainting is really about
            err = (rec.detach() - x).pow(2).mean(1, keepdim=True)           # (B, 1, H, W)
            out["hole_mse"] = (err * holes).sum() / holes.sum().clamp_min(1)
        return out

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor, generator: torch.Generator | None = None
                    ) -> tuple[torch.Tensor, torch.Tensor]:
        """For notebooks: ``(corrupted, reconstruction)``, both (B, C, H, W) in [0, 1]."""
        x = self._check(x, "x")
        corrupted, _ = self.corrupt(x, generator)
        return corrupted, self.decoder(self.backbone.forward_features(corrupted))


@register(Autoencoder, "Denoising / inpainting autoencoder: rebuild the clean image from a corrupted one")
def autoencoder(data: Any = None, backbone: Any = None, **config: Any) -> Autoencoder:
    """Denoising autoencoder (Vincent et al. 2008). ``config``: see :class:`AutoencoderConfig`."""
    cfg = make_config(AutoencoderConfig, config)
    net = default_backbone(data, backbone, kind=Autoencoder.kinds[0])
    shape = tuple(data.sample_shape) if data is not None else \
        (getattr(net, "in_channels", cfg.in_channels), cfg.image_size, cfg.image_size)
    return Autoencoder(net, cfg, shape)
