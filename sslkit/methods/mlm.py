"""Masked language modelling (BERT): hide 15% of the tokens and predict them from the rest.

Devlin, Chang, Lee & Toutanova (2019), "BERT: Pre-training of Deep Bidirectional Transformers for
Language Understanding", https://arxiv.org/abs/1810.04805 (section 3.1, task #1).

    ids ─ mask_tokens (80% [MASK], 10% random, 10% kept) ─ Transformer ─> (B, L, D) ─ head ─> (B, L, V)
    loss = cross-entropy on the chosen positions only

Evaluation uses the output at the CLS position (``embed``). ``predict_masked("the [MASK] sat")``
shows what the model fills in.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from sslkit import checks, losses, pretext
from sslkit.methods.base import Method, default_backbone, make_config
from sslkit.methods.registry import register


@dataclass
class MLMConfig:
    # Fraction of (non-special) tokens chosen for prediction. Paper: 0.15.
    mask_ratio: float = 0.15

    def __post_init__(self) -> None:
        checks.number("mask_ratio", self.mask_ratio, min=0.0, max=1.0, min_open=True)


class MLM(Method):
    name = "mlm"
    kinds = ("text",)
    default_lr = 5e-4  # AdamW; paper: Adam lr 1e-4 with warm-up at batch 256 and much longer runs

    def __init__(self, backbone: nn.Module, config: MLMConfig, tokenizer: Any) -> None:
        for attr in ("forward_tokens", "vocab_size"):
            if not hasattr(backbone, attr):
                raise ValueError(f"mlm needs a token backbone (e.g. 'transformer') with {attr}; "
                                 f"got {type(backbone).__name__}")
        if backbone.vocab_size != len(tokenizer):
            raise ValueError(f"backbone has vocab_size={backbone.vocab_size} but the tokenizer has "
                             f"{len(tokenizer)} tokens")
        super().__init__(backbone)
        self.config = config
        self.tokenizer = tokenizer
        d, v = backbone.embed_dim, backbone.vocab_size
        # BERT's MLM head: a dense + GELU + LayerNorm transform, then a linear map to the vocabulary.
        self.head = nn.Sequential(nn.Linear(d, d), nn.GELU(), nn.LayerNorm(d), nn.Linear(d, v))
        self.register_buffer("special_ids", torch.tensor(list(tokenizer.special_ids), dtype=torch.long))
        # The same ids as Python ints for mask_tokens: checked on the host once, no sync per step.
        self._special_list = [int(i) for i in tokenizer.special_ids]

    def _check(self, ids: Any, name: str = "batch") -> torch.Tensor:
        checks.tensor(name, ids, ndim=2, dtypes="int")
        if ids.shape[0] < 1:
            raise ValueError(f"{name} is empty (shape {tuple(ids.shape)})")
        return ids

    def training_step(self, batch: torch.Tensor) -> dict[str, torch.Tensor]:
        ids = self._check(batch)                                           # (B, L) int64
        inputs, targets, mask = pretext.mask_tokens(
            ids, self.backbone.vocab_size, self._special_list, self.tokenizer.mask_id, self.config.mask_ratio)
        logits = self.head(self.backbone.forward_tokens(inputs))           # (B, L, V)
        loss = losses.mlm_cross_entropy(logits, targets, mask)
        with torch.no_grad():
            hit = (logits.argmax(-1) == targets) & mask
            acc = hit.sum() / mask.sum().clamp_min(1)                      # accuracy on masked tokens
        return {"loss": loss, "acc": acc}

    @torch.no_grad()
    def predict_masked(self, text: str, top_k: int = 5) -> list[list[tuple[str, float]]]:
        """For notebooks: the ``top_k`` (token, probability) guesses for each ``[MASK]`` in ``text``.

        ``text`` is tokenized with the data's tokenizer; a [CLS] token is put in front as in the
        training sequences. Special tokens are never proposed.
        """
        if not isinstance(text, str):
            raise ValueError(f"text must be a str ({type(text).__name__} given)")
        top_k = checks.integer("top_k", top_k, min=1, max=self.backbone.vocab_size - len(self.special_ids))
        tk = self.tokenizer
        pieces = text.split("[MASK]")
        if len(pieces) < 2:
            raise ValueError(f"text={text!r} contains no [MASK] to predict")
        ids = [tk.cls_id]
        for i, piece in enumerate(pieces):
            ids += tk.encode(piece) + ([tk.mask_id] if i < len(pieces) - 1 else [])
        ids_t = torch.tensor([ids], device=self.special_ids.device)        # (1, L)
        logits = self.head(self.backbone.forward_tokens(ids_t))[0]         # (L, V)
        logits[:, self.special_ids] = float("-inf")
        probs = logits.softmax(-1)[ids_t[0] == tk.mask_id]                  # (M, V)
        top = probs.topk(top_k, dim=-1)
        return [[(tk.decode([int(i)]), float(p)) for p, i in zip(ps, idx)]
                for ps, idx in zip(top.values, top.indices)]


@register(MLM, "Masked language modelling (BERT): predict 15% hidden tokens")
def mlm(data: Any = None, backbone: Any = None, **config: Any) -> MLM:
    """BERT-style MLM. ``data``: a text Dataset (its tokenizer gives vocabulary and [MASK]); required."""
    cfg = make_config(MLMConfig, config)
    if data is None:
        raise ValueError("mlm needs data= a text Dataset with a tokenizer (e.g. sslkit.data.load('corpus')): "
                         "the vocabulary and the [MASK] id come from it")
    net = default_backbone(data, backbone, kind=MLM.kinds[0])
    if getattr(data, "tokenizer", None) is None:
        raise ValueError(f"data={data.name!r} has no tokenizer; mlm needs one for the vocabulary and [MASK]")
    return MLM(net, cfg, data.tokenizer)
