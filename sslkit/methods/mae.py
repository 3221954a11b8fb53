"""MAE: hide most patches of an image and reconstruct their pixels from the visible ones.

He, Chen, Xie, Li, Dollar & Girshick (2022), "Masked Autoencoders Are Scalable Vision Learners",
https://arxiv.org/abs/2111.06377.

    x ─ patch embedding + positions ─ keep 25% by index ─> visible tokens ─ ViT blocks ─> latent (B, 1+K, D)
    latent + mask tokens, unshuffled ─ light decoder ─> pixels of every patch ─ MSE on removed ones

The encoder only ever sees the visible 25% (cheap); the decoder is thrown away after training and
evaluation uses the encoder's CLS features. Both passes are written out here (``forward_encoder``,
``forward_decoder``, as the official ``models_mae.py``) with the layers of the backbone ViT
(``patch_embed``, ``pos_embed``, ``cls_token``, ``blocks``, ``norm``), so the trained backbone is an
ordinary ViT.

As the paper: fixed 2-D sin-cos position embeddings in the encoder (a ``vit_tiny`` built by name
gets ``positions="sincos"``; a ViT module passed in keeps its own) and in the decoder, AdamW with
betas (0.9, 0.95) (``adam_betas``, read by the engine), and one ``losses.norm_pix`` used by both
the loss and ``reconstruct``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from sslkit import checks, losses, pretext
from sslkit.backbones.vit import Block, init_weights, sincos_2d
from sslkit.methods.base import Method, default_backbone, make_config
from sslkit.methods.registry import register


@dataclass
class MAEConfig:
    # Fraction of patches removed. Paper: 0.75 (images are redundant; lower ratios make the task easy).
    mask_ratio: float = 0.75
    # Decoder width / depth / heads. Paper default: 512 wide, 8 blocks; a 192-wide encoder on 64
    # patches needs far less: 128 wide, 2 blocks keeps the decoder a small part of the compute.
    # The width must be a multiple of 4 (2-D sin-cos positions) and of decoder_heads.
    decoder_dim: int = 128
    decoder_depth: int = 2
    decoder_heads: int = 4
    # Predict per-patch normalised pixels. Paper: True gives better features; False by default here
    # so that the reconstructions shown in the notebooks are plain images.
    norm_pix: bool = False

    def __post_init__(self) -> None:
        checks.number("mask_ratio", self.mask_ratio, min=0.0, max=1.0, max_open=True)
        checks.integer("decoder_dim", self.decoder_dim, min=4)
        if self.decoder_dim % 4:
            raise ValueError(f"decoder_dim={self.decoder_dim} must be a multiple of 4 (the decoder's "
                             f"2-D sin-cos position embeddings)")
        checks.integer("decoder_depth", self.decoder_depth, min=1)
        checks.integer("decoder_heads", self.decoder_heads, min=1)
        if self.decoder_dim % self.decoder_heads:
            raise ValueError(f"decoder_dim={self.decoder_dim} must be divisible by "
                             f"decoder_heads={self.decoder_heads}")


class MAE(Method):
    name = "mae"
    kinds = ("image",)
    default_lr = 5e-4  # AdamW; paper: 1.5e-4 x B/256 with 40 warm-up epochs on ImageNet
    adam_betas = (0.9, 0.95)  # paper (appendix A.1): AdamW beta2 = 0.95

    def __init__(self, backbone: nn.Module, config: MAEConfig) -> None:
        for attr in ("patch_embed", "pos_embed", "cls_token", "blocks", "norm", "patch_size", "num_patches",
                     "image_size", "in_channels"):
            if not hasattr(backbone, attr):
                raise ValueError(f"mae needs a ViT backbone (e.g. 'vit_tiny') with {attr}; "
                                 f"got {type(backbone).__name__}")
        n = backbone.num_patches
        if round(config.mask_ratio * n) >= n:
            raise ValueError(f"mask_ratio={config.mask_ratio} removes all {n} patches of this ViT "
                             f"({backbone.image_size} px images, patch_size={backbone.patch_size}); "
                             f"use a lower ratio or smaller patches")
        super().__init__(backbone)
        self.config = config
        p, c, grid = backbone.patch_size, backbone.in_channels, backbone.image_size // backbone.patch_size
        dd = config.decoder_dim
        self.decoder_embed = nn.Linear(backbone.embed_dim, dd)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dd))
        # Fixed 2-D sin-cos decoder positions (a buffer: never trained), position 0 for the CLS token.
        pos = torch.cat([torch.zeros(1, dd), sincos_2d(dd, grid, grid)])
        self.register_buffer("decoder_pos", pos[None])                     # (1, 1+N, d)
        self.decoder = nn.ModuleList(Block(dd, config.decoder_heads) for _ in range(config.decoder_depth))
        self.decoder_norm = nn.LayerNorm(dd)
        self.decoder_pred = nn.Linear(dd, p * p * c)                       # pixels of one patch
        nn.init.trunc_normal_(self.mask_token, std=0.02)
        for m in (self.decoder_embed, self.decoder, self.decoder_norm, self.decoder_pred):
            m.apply(init_weights)

    def _check(self, x: Any, name: str = "batch") -> torch.Tensor:
        checks.tensor(name, x, ndim=4, dtypes="float")
        size = self.backbone.image_size
        if x.shape[-2:] != (size, size) or x.shape[1] != self.backbone.in_channels:
            raise ValueError(f"{name} has shape {tuple(x.shape)}; this MAE was built for "
                             f"({self.backbone.in_channels}, {size}, {size}) images")
        return x

    def forward_encoder(self, x: torch.Tensor, mask_ratio: float, generator: torch.Generator | None = None
                        ) -> tuple[torch.Tensor, pretext.MaskIndices]:
        """Images (B, C, H, W) -> latent (B, 1+K, D) of the CLS token and the K visible patches, and
        the masking (``mask`` (B, N) True = removed, ``ids_keep``, ``ids_restore``)."""
        vit = self.backbone
        t = vit.patch_embed(x).flatten(2).transpose(1, 2) + vit.pos_embed[:, 1:]  # (B, N, D), row-major
        B, N, D = t.shape
        m = pretext.mask_indices(B, N, mask_ratio, x.device, generator)
        t = t.gather(1, m.ids_keep[..., None].expand(-1, -1, D))            # (B, K, D): visible only
        cls = (vit.cls_token + vit.pos_embed[:, :1]).expand(B, -1, -1)     # (B, 1, D)
        t = torch.cat([cls, t], dim=1)                                     # (B, 1+K, D)
        for blk in vit.blocks:
            t, _ = blk(t)
        return vit.norm(t), m

    def forward_decoder(self, latent: torch.Tensor, ids_restore: torch.Tensor) -> torch.Tensor:
        """latent (B, 1+K, D) -> predicted pixels of all N patches (B, N, P*P*C)."""
        h = self.decoder_embed(latent)                                     # (B, 1+K, d)
        b, n = ids_restore.shape
        masked = self.mask_token.expand(b, n - (h.shape[1] - 1), -1)       # (B, N-K, d)
        seq = torch.cat([h[:, 1:], masked], dim=1)                         # kept first, then masks
        seq = seq.gather(1, ids_restore[..., None].expand(-1, -1, h.shape[-1]))  # original order
        seq = torch.cat([h[:, :1], seq], dim=1) + self.decoder_pos         # (B, 1+N, d)
        for blk in self.decoder:
            seq, _ = blk(seq)
        return self.decoder_pred(self.decoder_norm(seq))[:, 1:]           # (B, N, P*P*C)

    def _forward(self, x: torch.Tensor, mask_ratio: float, generator: torch.Generator | None = None):
        latent, m = self.forward_encoder(x, mask_ratio, generator)         # (B, 1+K, D)
        target = pretext.patchify(x, self.backbone.patch_size)            # (B, N, P*P*C)
        return self.forward_decoder(latent, m.ids_restore), target, m.mask

    def training_step(self, batch: torch.Tensor) -> dict[str, torch.Tensor]:
        x = self._check(batch)                                             # (B, C, H, W)
        pred, target, mask = self._forward(x, self.config.mask_ratio)
        loss = losses.masked_mse(pred, target, mask, norm_pix=self.config.norm_pix)
        with torch.no_grad():  # how well the visible patches are copied (not trained on)
            visible = losses.masked_mse(pred, target, ~mask, norm_pix=self.config.norm_pix)
        return {"loss": loss, "visible_mse": visible}

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor, mask_ratio: float | None = None,
                    generator: torch.Generator | None = None
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """For notebooks: ``(masked, reconstruction, mask)``, all (B, ., H, W).

        ``masked`` is ``x`` with removed patches set to 0; ``reconstruction`` the decoder's image for
        every patch (de-normalised with each true patch's mean/std when ``norm_pix``), clamped to
        [0, 1]; ``mask`` (B, 1, H, W) bool, True on removed patches. ``torch.where(mask, rec, x)``
        pastes the prediction into the visible image, as in the paper's figures.
        """
        x = self._check(x, "x")
        ratio = self.config.mask_ratio if mask_ratio is None else mask_ratio
        pred, target, mask = self._forward(x, ratio, generator)
        if self.config.norm_pix:   # the prediction is in normalised units: undo the same norm_pix
            _, mean, std = losses.norm_pix(target)
            pred = pred * std + mean
        p, c, size = self.backbone.patch_size, x.shape[1], x.shape[-1]
        rec = pretext.unpatchify(pred, p, c, size).clamp(0, 1)             # (B, C, H, W)
        pix = pretext.unpatchify(mask[..., None].expand(-1, -1, p * p).float(), p, 1, size) > 0.5
        return x.masked_fill(pix, 0.0), rec, pix


@register(MAE, "MAE: reconstruct the pixels of 75% hidden patches with a ViT encoder-decoder")
def mae(data: Any = None, backbone: Any = None, **config: Any) -> MAE:
    """Masked autoencoder (He et al. 2022). ``config``: see :class:`MAEConfig`.

    Default backbone: ``vit_tiny`` with fixed sin-cos positions (also when asked for by name).
    """
    cfg = make_config(MAEConfig, config)
    backbone = "vit_tiny" if backbone is None else backbone
    if isinstance(backbone, str) and backbone != "vit_tiny":
        raise ValueError(f"mae needs a ViT backbone (it encodes only the visible patches); got "
                         f"backbone={backbone!r}, allowed: 'vit_tiny' or a ViT module")
    options = {"positions": "sincos"} if backbone == "vit_tiny" else None
    return MAE(default_backbone(data, backbone, kind=MAE.kinds[0], options=options), cfg)
