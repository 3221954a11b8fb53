"""Jigsaw puzzles: shuffle the tiles of an image and predict which permutation was used.

Noroozi & Favaro (2016), "Unsupervised Learning of Visual Representations by Solving Jigsaw
Puzzles", https://arxiv.org/abs/1603.09246.

    x ─ cut into grid x grid tiles, shuffle with permutation #y ─> tiles (B, G, C, t, t)
      ─ shared backbone per tile ─> (B, G, D) ─ concat (B, G*D) ─ MLP ─> K logits ─ CE(y)

Each tile is encoded on its own (a "context-free network"), so the only way to order them is to
understand what each piece shows. Tiles are random crops a little smaller than their cells so
that the network cannot just match edges. Evaluation runs the backbone on whole images.
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


@dataclass
class JigsawConfig:
    # Tiles per side. None: 2 for images < 24 px (an 8x8 digit cut 3x3 leaves 2-pixel tiles),
    # else 3 as in the paper.
    grid: int | None = None
    # Number of permutation classes. None: all 24 for a 2x2 grid, 100 for 3x3 (paper: 1000 of the
    # 9! on ImageNet; 100 suits a few thousand tiny images).
    num_permutations: int | None = None
    # Leave a random gap: each tile is a random crop of 7/8 of its cell (paper: 64 px tiles in 75 px
    # cells). Cells under 8 px are used whole.
    jitter: bool = True
    # Hidden width of the permutation classifier on the concatenated tile features.
    head_hidden: int = 512
    # Image side when no data is given (otherwise taken from the data); it picks the grid.
    image_size: int = 32

    def __post_init__(self) -> None:
        if self.grid is not None:
            checks.integer("grid", self.grid, min=2, max=4)
        if self.num_permutations is not None:
            checks.integer("num_permutations", self.num_permutations, min=2)
        checks.integer("head_hidden", self.head_hidden, min=1)
        checks.integer("image_size", self.image_size, min=2)


class Jigsaw(Method):
    name = "jigsaw"
    kinds = ("image",)
    default_lr = 1e-3  # AdamW

    def __init__(self, backbone: nn.Module, config: JigsawConfig, image_size: int) -> None:
        super().__init__(backbone)
        self.config = config
        self.grid = config.grid or (2 if image_size < 24 else 3)
        if image_size // self.grid < 1:
            raise ValueError(f"grid={self.grid} is larger than the images ({image_size} px)")
        n_all = {2: 24, 3: 362880, 4: 100_000}[self.grid]
        k = config.num_permutations or (24 if self.grid == 2 else 100)
        checks.integer("num_permutations", k, min=2, max=n_all)
        perms = pretext.check_permutations(pretext.jigsaw_permutations(k, self.grid), self.grid)
        self.register_buffer("permutations", perms)                        # (K, G), checked once here
        cell = image_size // self.grid
        tile = cell - cell // 8 if config.jitter else cell
        # A ViT encodes whole patches only: round the tile down to a multiple of its patch size.
        patch = int(getattr(backbone, "patch_size", 1))
        if tile < patch:
            raise ValueError(f"jigsaw with grid={self.grid} on {image_size} px images cuts {tile} px tiles, "
                             f"smaller than the backbone's patch_size={patch}; use a smaller grid, larger "
                             f"images or a backbone without patches")
        self.tile_size = tile // patch * patch
        g = self.grid * self.grid
        self.head = heads.mlp([g * backbone.embed_dim, config.head_hidden, k])

    def training_step(self, batch: torch.Tensor) -> dict[str, torch.Tensor]:
        x = checks.images("batch", batch, min_batch=2)                                            # (B, C, H, W)
        # validate=False: the permutations were checked in __init__; re-checking reads them back
        # to the host, a GPU sync on every step.
        tiles, y = pretext.jigsaw(x, self.permutations, self.grid, tile_size=self.tile_size, validate=False)
        b, g = tiles.shape[:2]                                             # (B, G, C, t, t)
        tiles_x = keep_layout(tiles.flatten(0, 1), x)                      # (B*G, C, t, t), x's layout
        feats = self.backbone.forward_features(tiles_x)                    # (B*G, D): shared encoder
        logits = self.head(feats.reshape(b, -1))                           # (B, K)
        loss = F.cross_entropy(logits, y)
        acc = (logits.detach().argmax(1) == y).float().mean()
        return {"loss": loss, "acc": acc}


@register(Jigsaw, "Jigsaw puzzles: predict the permutation that shuffled an image's tiles")
def jigsaw(data: Any = None, backbone: Any = None, **config: Any) -> Jigsaw:
    """Jigsaw puzzles (Noroozi & Favaro 2016). ``config``: see :class:`JigsawConfig`."""
    cfg = make_config(JigsawConfig, config)
    size = min(data.sample_shape[-2:]) if data is not None and data.kind == "image" else cfg.image_size
    return Jigsaw(default_backbone(data, backbone, kind=Jigsaw.kinds[0]), cfg, size)
