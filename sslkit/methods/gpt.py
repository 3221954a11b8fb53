"""Next-token prediction (GPT): a causal Transformer reads a text and predicts every next token.

Radford, Narasimhan, Salimans & Sutskever (2018), "Improving Language Understanding by Generative
Pre-Training" (GPT); the model layout follows nanoGPT (pre-norm blocks, tied input/output embeddings).

    ids (B, L) ─ causal Transformer ─> h (B, L, D) ─ h @ E^T ─> logits (B, L, V)
    loss = cross-entropy of logits[:, t] against ids[:, t + 1] (padding left out)

Position t attends only to positions <= t, so the whole sequence trains in one pass. The output layer
reuses the token embedding E (weight tying, Press & Wolf 2017): one V x D table instead of two, which
matters on a small corpus. ``embed`` gives the mean of the outputs over the non-padding positions
(B, D) - the CLS output of a causal model sees nothing but itself (see ``TextTransformer``).
Notebook helpers: ``generate`` (temperature, top-k), ``predict_next``, ``perplexity``;
:func:`ngram_perplexity` gives the unigram/bigram baselines a language model must beat.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from sslkit import backbones, checks, losses
from sslkit.methods.base import Method, default_backbone, make_config
from sslkit.methods.registry import register


@dataclass
class GPTConfig:
    # Tie the output layer to the token embedding (nanoGPT, GPT-2). False = a separate V x D layer.
    tie_weights: bool = True

    def __post_init__(self) -> None:
        checks.choice("tie_weights", self.tie_weights, (True, False))


class GPT(Method):
    name = "gpt"
    kinds = ("text",)
    default_lr = 1e-3  # AdamW; nanoGPT's small character model uses 1e-3 (GPT-1: 2.5e-4 at 117M parameters)

    def __init__(self, backbone: nn.Module, config: GPTConfig, tokenizer: Any) -> None:
        if not getattr(backbone, "causal", False) or not hasattr(backbone, "forward_tokens"):
            raise ValueError(f"gpt needs a causal token backbone, e.g. sslkit.backbones.create("
                             f"'transformer', vocab_size=..., causal=True); got {type(backbone).__name__} "
                             f"with causal={getattr(backbone, 'causal', None)!r}")
        if backbone.vocab_size != len(tokenizer):
            raise ValueError(f"backbone has vocab_size={backbone.vocab_size} but the tokenizer has "
                             f"{len(tokenizer)} tokens")
        super().__init__(backbone)
        self.config = config
        self.tokenizer = tokenizer
        self.pad_id = backbone.pad_id
        self.head = None if config.tie_weights else nn.Linear(backbone.embed_dim, backbone.vocab_size, bias=False)
        # Never proposed by generate/predict_next: padding, [MASK] and [CLS] (the start token) are not text.
        banned = [i for i in (tokenizer.pad_id, tokenizer.mask_id, tokenizer.cls_id) if i is not None]
        self.register_buffer("banned_ids", torch.tensor(banned, dtype=torch.long), persistent=False)

    def logits(self, ids: torch.Tensor) -> torch.Tensor:
        """(B, L) token ids -> (B, L, V) next-token logits; position t depends on ids[:, :t + 1] only."""
        h = self.backbone.forward_tokens(ids)                                # (B, L, D)
        return self.head(h) if self.head is not None else F.linear(h, self.backbone.tok_embed.weight)

    def training_step(self, batch: torch.Tensor) -> dict[str, torch.Tensor]:
        ids = checks.tensor("batch", batch, ndim=2, dtypes="int")            # (B, L)
        if ids.shape[0] < 1 or ids.shape[1] < 2:
            raise ValueError(f"batch must be (B, L) token ids with B >= 1 and L >= 2; got shape "
                             f"{tuple(ids.shape)}")
        logits = self.logits(ids)                                            # (B, L, V)
        loss = losses.next_token_cross_entropy(logits, ids, self.pad_id)
        with torch.no_grad():
            targets = ids[:, 1:]
            valid = targets != self.pad_id if self.pad_id is not None else torch.ones_like(targets, dtype=torch.bool)
            hit = (logits[:, :-1].argmax(-1) == targets) & valid
            acc = hit.sum() / valid.sum().clamp_min(1)                       # next-token accuracy
        return {"loss": loss, "acc": acc, "perplexity": loss.detach().exp()}

    def _ids(self, prompt: str | torch.Tensor) -> torch.Tensor:
        """A prompt as (B, L) ids on the model's device; text gets a [CLS] in front (as in training)."""
        device = self.backbone.tok_embed.weight.device
        if isinstance(prompt, str):
            return torch.tensor([[self.tokenizer.cls_id, *self.tokenizer.encode(prompt)]], device=device)
        ids = checks.tensor("prompt", prompt, ndim=2, dtypes="int")
        if ids.shape[0] < 1 or ids.shape[1] < 1:
            raise ValueError(f"prompt must be (B, L) ids with B, L >= 1; got shape {tuple(ids.shape)}")
        return ids.to(device)

    def _next_logits(self, ids: torch.Tensor) -> torch.Tensor:
        """(B, V) logits for the token after ``ids``; a context longer than the model's max_len keeps
        the first token ([CLS], the start token it was trained with) and the most recent ones."""
        m = self.backbone.max_len
        if ids.shape[1] > m:
            ids = torch.cat([ids[:, :1], ids[:, -(m - 1):]], dim=1) if m > 1 else ids[:, -1:]
        out = self.logits(ids)[:, -1].float()                                # (B, V)
        out[:, self.banned_ids] = float("-inf")
        return out

    @torch.no_grad()
    def generate(self, prompt: str | torch.Tensor, max_new_tokens: int = 20, temperature: float = 1.0,
                 top_k: int | None = None, generator: torch.Generator | None = None) -> str | torch.Tensor:
        """Continue ``prompt`` by sampling ``max_new_tokens`` tokens one at a time.

        Each token is drawn from ``softmax(logits / temperature)`` restricted to the ``top_k`` most
        likely tokens (None = all). ``temperature=0`` takes the most likely token (greedy; so does
        ``top_k=1``, and temperatures near 0); higher temperatures flatten the distribution. Padding, [MASK] and [CLS] are
        never drawn. A str prompt returns the continuation as text (prompt not repeated); a (B, L)
        id tensor returns (B, L + max_new_tokens) ids. ``generator`` (on the model's device) makes
        the samples reproducible.
        """
        ids = self._ids(prompt)
        max_new_tokens = checks.integer("max_new_tokens", max_new_tokens, min=0)
        temperature = checks.number("temperature", temperature, min=0.0)
        allowed = self.backbone.vocab_size - len(self.banned_ids)
        if top_k is not None:
            top_k = checks.integer("top_k", top_k, min=1, max=allowed)
        start = ids.shape[1]
        for _ in range(max_new_tokens):
            logits = self._next_logits(ids)                                  # (B, V)
            if temperature == 0:
                nxt = logits.argmax(-1, keepdim=True)                        # (B, 1) greedy
            else:
                logits = logits / temperature
                if top_k is not None:                                        # keep the k largest
                    kth = logits.topk(top_k, dim=-1).values[:, -1:]          # (B, 1)
                    logits = logits.masked_fill(logits < kth, float("-inf"))
                nxt = torch.multinomial(logits.softmax(-1), 1, generator=generator)   # (B, 1)
            ids = torch.cat([ids, nxt], dim=1)
        return self.tokenizer.decode(ids[0, start:]) if isinstance(prompt, str) else ids

    @torch.no_grad()
    def predict_next(self, text: str, top_k: int = 5) -> list[tuple[str, float]]:
        """For notebooks: the ``top_k`` (token, probability) guesses for the token after ``text``."""
        if not isinstance(text, str):
            raise ValueError(f"text must be a str ({type(text).__name__} given)")
        top_k = checks.integer("top_k", top_k, min=1, max=self.backbone.vocab_size - len(self.banned_ids))
        probs = self._next_logits(self._ids(text))[0].softmax(-1)            # (V,)
        top = probs.topk(top_k)
        return [(self.tokenizer.decode([int(i)]), float(p)) for p, i in zip(top.values, top.indices)]

    @torch.no_grad()
    def perplexity(self, ids: torch.Tensor, batch_size: int = 256) -> float:
        """``exp`` of the mean next-token cross-entropy over all non-padding targets of ``ids`` (N, L)."""
        checks.tensor("ids", ids, ndim=2, dtypes="int")
        batch_size = checks.integer("batch_size", batch_size, min=1)
        device = self.backbone.tok_embed.weight.device
        total, count = 0.0, 0
        for start in range(0, ids.shape[0], batch_size):
            chunk = ids[start:start + batch_size].to(device)
            n = int((chunk[:, 1:] != self.pad_id).sum()) if self.pad_id is not None else chunk[:, 1:].numel()
            total += float(losses.next_token_cross_entropy(self.logits(chunk), chunk, self.pad_id)) * n
            count += n
        if count == 0:
            raise ValueError("ids hold no target tokens (every position after the first is padding)")
        return math.exp(total / count)


def ngram_perplexity(train: torch.Tensor, test: torch.Tensor, vocab_size: int, order: int = 2,
                     alpha: float = 1.0, beta: float = 10.0, pad_id: int | None = 0) -> float:
    """Perplexity on ``test`` of a count-based n-gram model fit on ``train`` (both (N, L) ids).

    The baselines a language model must beat, scored on exactly the targets ``GPT.perplexity`` scores
    (every non-padding token after the first of each row). ``order=1``: unigram with add-``alpha``
    counts ``p1(w) = (c(w) + alpha) / (n + alpha V)``. ``order=2``: bigram
    ``p(w | v) = (c(v, w) + beta p1(w)) / (c(v) + beta)`` - ``beta`` pseudo-counts pull each row
    towards the unigram, so a pair never seen in training falls back on how common w is.
    """
    for name, t in (("train", train), ("test", test)):
        checks.tensor(name, t, ndim=2, dtypes="int")
        if t.shape[1] < 2:
            raise ValueError(f"{name} has length {t.shape[1]}; needs L >= 2")
    vocab_size = checks.integer("vocab_size", vocab_size, min=1)
    order = checks.choice("order", order, (1, 2))
    alpha = checks.number("alpha", alpha, min=0.0, min_open=True)
    beta = checks.number("beta", beta, min=0.0, min_open=True)

    def pairs(name: str, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        ids = ids.long().cpu()
        if int(ids.min()) < 0 or int(ids.max()) >= vocab_size:
            raise ValueError(f"{name} holds ids in [{int(ids.min())}, {int(ids.max())}]; allowed: "
                             f"[0, {vocab_size - 1}] (vocab_size={vocab_size})")
        prev, nxt = ids[:, :-1].flatten(), ids[:, 1:].flatten()
        keep = nxt != pad_id if pad_id is not None else torch.ones_like(nxt, dtype=torch.bool)
        return prev[keep], nxt[keep]

    prev, nxt = pairs("train", train)
    t_prev, t_next = pairs("test", test)
    if len(t_next) == 0:
        raise ValueError("test holds no target tokens (every position after the first is padding)")
    uni = torch.bincount(nxt, minlength=vocab_size).double()                 # (V,) c(w)
    p1 = (uni + alpha) / (uni.sum() + alpha * vocab_size)                    # (V,)
    if order == 1:
        logp = p1[t_next].log()
    else:
        pair_counts = torch.zeros(vocab_size * vocab_size, dtype=torch.float64)   # (V * V,) c(v, w)
        pair_counts.index_add_(0, prev * vocab_size + nxt, torch.ones(len(nxt), dtype=torch.float64))
        ctx = torch.bincount(prev, minlength=vocab_size).double()            # (V,) c(v)
        num = pair_counts[t_prev * vocab_size + t_next] + beta * p1[t_next]
        logp = (num / (ctx[t_prev] + beta)).log()
    return math.exp(-logp.mean().item())


@register(GPT, "GPT: a causal Transformer predicts every next token (next-token cross-entropy)")
def gpt(data: Any = None, backbone: Any = None, **config: Any) -> GPT:
    """GPT-style language model (Radford et al. 2018). ``data``: a text Dataset (its tokenizer);
    required. ``backbone``: None or "transformer" (built with ``causal=True``), or a causal module."""
    cfg = make_config(GPTConfig, config)
    if data is None:
        raise ValueError("gpt needs data= a text Dataset with a tokenizer (e.g. sslkit.data.load('corpus')): "
                         "the vocabulary comes from it")
    if backbone is None or backbone == "transformer":
        net = default_backbone(data, "transformer", kind=GPT.kinds[0])             # checks kind, vocabulary
        kwargs = {**net.sslkit_kwargs, "causal": True}
        net = backbones.create("transformer", **kwargs)
        net.sslkit_name, net.sslkit_kwargs = "transformer", kwargs           # load_method rebuilds it
    elif isinstance(backbone, str):
        raise ValueError(f"backbone={backbone!r}: gpt needs a causal token model; use None or "
                         f"'transformer' (built with causal=True), or pass such a module")
    else:
        net = default_backbone(data, backbone, kind=GPT.kinds[0])
    if getattr(data, "tokenizer", None) is None:
        raise ValueError(f"data={data.name!r} has no tokenizer; gpt needs one for the vocabulary")
    return GPT(net, cfg, data.tokenizer)
