"""A tiny Vision Transformer (Dosovitskiy et al. 2021) for small images, plus the Transformer block
the text encoder and the MAE decoder reuse.

``vit_tiny``: ViT-Tiny width (D = 192, 3 heads, DeiT-Ti) at half depth (6 blocks): 32x32 images with
4x4 patches give only 64 tokens, and 6 blocks train in minutes on one GPU. Pre-norm blocks, a
learned CLS token and position embeddings (interpolated when a different image size comes in, e.g.
DINO's local crops): learned by default, or fixed 2-D sin-cos ones (``positions="sincos"``, MAE's).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from sslkit import checks


class Attention(nn.Module):
    """Multi-head self-attention; can return its attention map (B, heads, L, L)."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"embed_dim={dim} must be divisible by num_heads={num_heads}")
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, key_mask: torch.Tensor | None = None,
                return_attention: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``x`` (B, L, D); ``key_mask`` (B, L) bool, True = may be attended to (False: padding), or
        (B, L, L) with ``key_mask[b, i, j]`` = query i may attend to key j (e.g. a causal mask)."""
        b, n, d = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.num_heads, d // self.num_heads).permute(2, 0, 3, 1, 4)
        mask = None if key_mask is None else (   # (B, 1, 1, L) per key, (B, 1, L, L) per query-key pair
            key_mask[:, None] if key_mask.ndim == 3 else key_mask[:, None, None, :])
        if return_attention:
            scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])            # (B, h, L, L)
            if mask is not None:
                scores = scores.masked_fill(~mask, float("-inf"))
            attn = scores.softmax(dim=-1)
            out = attn @ v
        else:
            attn = None
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)        # fused kernel
        out = out.transpose(1, 2).reshape(b, n, d)                              # (B, L, D)
        return self.proj(out), attn


class Block(nn.Module):
    """Pre-norm Transformer block: x + attn(LN(x)), then x + MLP(LN(x))."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor, key_mask: torch.Tensor | None = None,
                return_attention: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        h, attn = self.attn(self.norm1(x), key_mask, return_attention)
        x = x + h
        return x + self.mlp(self.norm2(x)), attn


def init_weights(m: nn.Module) -> None:
    """ViT initialisation: truncated normal (std 0.02) linears, unit LayerNorms."""
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)


def sincos_2d(dim: int, grid_h: int, grid_w: int) -> torch.Tensor:
    """Fixed 2-D sin-cos position embeddings (grid_h * grid_w, dim), patches in row-major order.

    As MAE (He et al. 2022) and MoCo v3: the first half of the channels encodes the row, the second
    half the column, each as ``[sin(pos * w_i), cos(pos * w_i)]`` with ``w_i = 10000^(-i / (dim/4))``,
    i = 0 .. dim/4 - 1 (the 1-D Transformer encoding of Vaswani et al. 2017 per axis).
    """
    dim = checks.integer("dim", dim, min=4)
    if dim % 4:
        raise ValueError(f"dim={dim} must be a multiple of 4 for 2-D sin-cos position embeddings "
                         f"(sin and cos for rows and for columns)")
    omega = 1.0 / 10000 ** (torch.arange(dim // 4, dtype=torch.float64) / (dim // 4))   # (dim/4,)
    rows, cols = torch.meshgrid(torch.arange(grid_h, dtype=torch.float64),
                                torch.arange(grid_w, dtype=torch.float64), indexing="ij")
    r = rows.reshape(-1, 1) * omega                                          # (N, dim/4)
    c = cols.reshape(-1, 1) * omega                                          # (N, dim/4)
    return torch.cat([r.sin(), r.cos(), c.sin(), c.cos()], dim=1).float()    # (N, dim)


def default_patch_size(image_size: int) -> int:
    """Patch side for ``image_size``: ``max(2, image_size // 8)`` (an 8x8 grid, 2 px for 8 px images)
    when it divides the image, else the divisor >= 2 of ``image_size`` nearest to it (28 px -> 4)."""
    image_size = checks.integer("image_size", image_size, min=2)
    want = max(2, image_size // 8)
    divisors = [p for p in range(2, image_size + 1) if image_size % p == 0]
    return min(divisors, key=lambda p: (abs(p - want), -p))                  # ties: the larger patch


class ViT(nn.Module):
    """(B, C, H, W) images -> (B, D) CLS features, D = ``embed_dim``.

    Args:
        image_size: side of the square images the position embeddings are made for (>= 2).
        patch_size: side of a patch, a divisor of ``image_size``; None -> :func:`default_patch_size`
            (4 for 32x32, 2 for 8x8, 12 for 96x96, 4 for 28x28).
        in_channels: 1 or 3.
        embed_dim, depth, num_heads, mlp_ratio: Transformer size (ViT-Tiny width, half depth).
        positions: "learned" (trained from a small random init, as ViT/DINO) or "sincos" (fixed 2-D
            sin-cos, not trained: MAE's encoder and decoder); ``embed_dim`` must then be a multiple of 4.
    """

    input_kind = "image"

    def __init__(self, image_size: int = 32, patch_size: int | None = None, in_channels: int = 3,
                 embed_dim: int = 192, depth: int = 6, num_heads: int = 3, mlp_ratio: float = 4.0,
                 positions: str = "learned") -> None:
        super().__init__()
        self.image_size = checks.integer("image_size", image_size, min=2)
        if patch_size is None:
            patch_size = default_patch_size(image_size)
        self.patch_size = checks.integer("patch_size", patch_size, min=1, max=image_size)
        if image_size % patch_size:
            divisors = [p for p in range(1, image_size + 1) if image_size % p == 0]
            raise ValueError(f"vit: image_size={image_size} is not a multiple of patch_size={patch_size}; "
                             f"allowed patch sizes for {image_size} px images: {divisors}")
        self.in_channels = checks.integer("in_channels", in_channels, min=1)
        self.embed_dim = checks.integer("embed_dim", embed_dim, min=1)
        checks.integer("depth", depth, min=1)
        checks.integer("num_heads", num_heads, min=1)
        self.positions = checks.choice("positions", positions, ("learned", "sincos"))
        self.grid = image_size // patch_size
        self.num_patches = self.grid ** 2
        self.patch_embed = nn.Conv2d(in_channels, embed_dim, patch_size, patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        if positions == "sincos":   # a buffer: saved with the weights, never trained; CLS position 0
            pos = torch.cat([torch.zeros(1, embed_dim), sincos_2d(embed_dim, self.grid, self.grid)])
            self.register_buffer("pos_embed", pos[None])                            # (1, 1+N, D)
        else:
            self.pos_embed = nn.Parameter(torch.zeros(1, 1 + self.num_patches, embed_dim))  # CLS first
        self.blocks = nn.ModuleList(Block(embed_dim, num_heads, mlp_ratio) for _ in range(depth))
        self.norm = nn.LayerNorm(embed_dim)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """The ViT's own initialisation, of every parameter (also what ``eval.random_init`` calls)."""
        self.patch_embed.reset_parameters()
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        if self.positions == "learned":
            nn.init.trunc_normal_(self.pos_embed, std=0.02)
        self.apply(init_weights)

    def _pos(self, grid_h: int, grid_w: int) -> torch.Tensor:
        """Patch position embeddings (1, gh*gw, D), bicubically resized for other image sizes."""
        pos = self.pos_embed[:, 1:]
        if (grid_h, grid_w) == (self.grid, self.grid):
            return pos
        pos = pos.reshape(1, self.grid, self.grid, -1).permute(0, 3, 1, 2)
        pos = F.interpolate(pos, size=(grid_h, grid_w), mode="bicubic", align_corners=False)
        return pos.permute(0, 2, 3, 1).reshape(1, grid_h * grid_w, -1)

    def patch_tokens(self, x: torch.Tensor) -> torch.Tensor:
        """Embedded patches with position, (B, N, D), in row-major patch order (as ``pretext.patchify``)."""
        checks.images("x", x, channels=(self.in_channels,))
        h, w = x.shape[-2:]
        if h % self.patch_size or w % self.patch_size:
            raise ValueError(f"x has size {h}x{w}; height and width must be multiples of "
                             f"patch_size={self.patch_size}")
        t = self.patch_embed(x).flatten(2).transpose(1, 2)                        # (B, N, D)
        return t + self._pos(h // self.patch_size, w // self.patch_size)

    def _encode(self, x: torch.Tensor, ids_keep: torch.Tensor | None,
                return_attention: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        t = self.patch_tokens(x)                                                  # (B, N, D)
        if ids_keep is not None:
            checks.tensor("ids_keep", ids_keep, ndim=2, dtypes="int")
            if ids_keep.shape[0] != t.shape[0]:
                raise ValueError(f"ids_keep has {ids_keep.shape[0]} rows for a batch of {t.shape[0]}")
            t = torch.gather(t, 1, ids_keep[..., None].expand(-1, -1, t.shape[-1]))  # (B, K, D)
        cls = (self.cls_token + self.pos_embed[:, :1]).expand(t.shape[0], -1, -1)  # (B, 1, D)
        t = torch.cat([cls, t], dim=1)                                            # (B, 1+K, D)
        attn = None
        for i, blk in enumerate(self.blocks):
            t, attn = blk(t, return_attention=return_attention and i == len(self.blocks) - 1)
        return self.norm(t), attn

    def forward_tokens(self, x: torch.Tensor, ids_keep: torch.Tensor | None = None) -> torch.Tensor:
        """All output tokens (B, 1 + K, D), CLS first; ``ids_keep`` (B, K) encodes only those patches
        (what ``sslkit.methods.mae``'s ``forward_encoder`` writes out step by step)."""
        return self._encode(x, ids_keep, False)[0]

    def forward_features(self, x: torch.Tensor, return_attention: bool = False
                         ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """CLS features (B, D); with ``return_attention`` also the last block's attention
        (B, heads, 1+N, 1+N), rows summing to 1 (row 0 is the CLS token's attention)."""
        t, attn = self._encode(x, None, return_attention)
        return (t[:, 0], attn) if return_attention else t[:, 0]

    forward = forward_features
