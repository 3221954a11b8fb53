"""A tiny Transformer for token sequences: a BERT-style encoder (Devlin et al. 2019), or with
``causal=True`` a GPT-style decoder (Radford et al. 2018).

Token + learned position embeddings, pre-norm blocks (shared with ``vit``), a learned CLS token
prepended inside (so any tokenizer works); padding positions are masked out of attention. Causal:
position t attends only to the CLS and positions <= t.
"""
from __future__ import annotations

import torch
from torch import nn

from sslkit import checks
from sslkit.backbones.vit import Block, init_weights


class TextTransformer(nn.Module):
    """(B, L) int64 token ids -> (B, D) features (output at the CLS position), D = ``embed_dim``.

    Args:
        vocab_size: number of token ids.
        max_len: longest sequence accepted (without the internal CLS).
        embed_dim, depth, num_heads: 128 / 4 / 4 - a "BERT-mini" size for the tiny corpus.
        pad_id: id of the padding token, ignored as an attention key; None = no padding.
        causal: GPT-style: position t sees only positions <= t (and the CLS in front, which acts as a
            start token). The CLS output then sees nothing of the text, so ``forward_features``
            returns the mean of the outputs over the non-padding positions instead (B, D).

    Token ids are range-checked (ValueError) only for CPU inputs: on an accelerator the check would
    read the ids back to the host, a sync on every training step.
    """

    input_kind = "text"

    def __init__(self, vocab_size: int, max_len: int = 128, embed_dim: int = 128, depth: int = 4,
                 num_heads: int = 4, mlp_ratio: float = 4.0, pad_id: int | None = 0,
                 causal: bool = False) -> None:
        super().__init__()
        self.vocab_size = checks.integer("vocab_size", vocab_size, min=1)
        self.max_len = checks.integer("max_len", max_len, min=1)
        self.embed_dim = checks.integer("embed_dim", embed_dim, min=1)
        checks.integer("depth", depth, min=1)
        self.pad_id = None if pad_id is None else checks.integer("pad_id", pad_id, min=0, max=vocab_size - 1)
        self.causal = checks.choice("causal", causal, (False, True))
        self.tok_embed = nn.Embedding(vocab_size, embed_dim)
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + max_len, embed_dim))   # CLS first
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.blocks = nn.ModuleList(Block(embed_dim, num_heads, mlp_ratio) for _ in range(depth))
        self.norm = nn.LayerNorm(embed_dim)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """The transformer's own initialisation, of every parameter (also what ``eval.random_init``
        calls)."""
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        nn.init.trunc_normal_(self.tok_embed.weight, std=0.02)
        self.apply(init_weights)

    def _check(self, ids: torch.Tensor) -> None:
        checks.tensor("ids", ids, ndim=2, dtypes="int")
        if ids.shape[1] < 1 or ids.shape[1] > self.max_len:
            raise ValueError(f"ids has length {ids.shape[1]}; allowed: 1 to max_len={self.max_len}")
        if ids.device.type != "cpu" or ids.numel() == 0:  # on an accelerator reading the values back
            return                                        # would sync every step (see class docstring)
        lo, hi = int(ids.min()), int(ids.max())
        if lo < 0 or hi >= self.vocab_size:
            raise ValueError(f"ids contain values in [{lo}, {hi}]; allowed: [0, {self.vocab_size - 1}] "
                             f"(vocab_size={self.vocab_size})")

    def _encode(self, ids: torch.Tensor) -> torch.Tensor:
        self._check(ids)
        b, n = ids.shape
        x = torch.cat([self.cls_token.expand(b, -1, -1), self.tok_embed(ids)], dim=1)  # (B, 1+L, D)
        x = x + self.pos_embed[:, :1 + n]
        keep = None
        if self.pad_id is not None:
            keep = torch.cat([torch.ones(b, 1, dtype=torch.bool, device=ids.device),
                              ids != self.pad_id], dim=1)                              # (B, 1+L)
        if self.causal:   # query i may attend to key j <= i (and to no padding)
            tril = torch.ones(n + 1, n + 1, dtype=torch.bool, device=ids.device).tril()  # (1+L, 1+L)
            keep = tril.expand(b, -1, -1) if keep is None else tril & keep[:, None, :]  # (B, 1+L, 1+L)
        for blk in self.blocks:
            x, _ = blk(x, key_mask=keep)
        return self.norm(x)

    def forward_tokens(self, ids: torch.Tensor) -> torch.Tensor:
        """Per-position outputs (B, L, D) for the input positions (for MLM heads)."""
        return self._encode(ids)[:, 1:]

    def forward_features(self, ids: torch.Tensor) -> torch.Tensor:
        """(B, D): the CLS output; causal: the mean output over the non-padding positions."""
        h = self._encode(ids)                                                        # (B, 1+L, D)
        if not self.causal:
            return h[:, 0]
        if self.pad_id is None:
            return h[:, 1:].mean(dim=1)
        keep = (ids != self.pad_id).unsqueeze(-1).to(h.dtype)                       # (B, L, 1)
        return (h[:, 1:] * keep).sum(dim=1) / keep.sum(dim=1).clamp_min(1)

    forward = forward_features
