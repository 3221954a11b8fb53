"""Explorer for next-token models (notebook 10): how temperature and top-k reshape the next-token
distribution of a GPT, and what the samples look like.

    w = sampling_explorer(gpt, "the value of")
    w.controls["temperature"].value = 0.5     # re-renders: sharper distribution, tamer samples
    w.controls["top_k"].value = 5              # only the 5 most likely tokens can be drawn
"""
from __future__ import annotations

import html
from typing import Any

import ipywidgets as widgets
import torch

from sslkit import checks
from sslkit.widgets.base import Explorer, seed_box, slider

SHOWN = 8   # next-token candidates listed (the rest of the distribution is summed in one row)


def reshape_distribution(probs: torch.Tensor, temperature: float, top_k: int | None = None) -> torch.Tensor:
    """The sampling distribution (V,) that ``temperature`` and ``top_k`` make of ``probs`` (V,).

    ``softmax(logits / T)`` equals ``p ** (1 / T)`` renormalised, so this works from probabilities;
    ``T = 0`` puts all mass on the most likely token (greedy). ``top_k`` keeps the k most likely
    tokens (ties at the k-th value kept, as ``GPT.generate``) and renormalises.
    """
    checks.tensor("probs", probs, ndim=1, dtypes="float")
    temperature = checks.number("temperature", temperature, min=0.0)
    if top_k is not None:
        top_k = checks.integer("top_k", top_k, min=1, max=len(probs))
    p = probs.double()
    if temperature == 0:
        out = torch.zeros_like(p)
        out[p.argmax()] = 1.0
        return out.to(probs.dtype)
    logp = p.clamp_min(1e-300).log() / temperature                        # log of p ** (1/T)
    logp = torch.where(p > 0, logp, torch.full_like(logp, float("-inf")))
    if top_k is not None:
        kth = logp.topk(top_k).values[-1]
        logp = logp.masked_fill(logp < kth, float("-inf"))
    return logp.softmax(0).to(probs.dtype)


def sampling_explorer(model: Any, prompt: str = "the value of", max_new_tokens: int = 12, n_samples: int = 3,
                      temperature: float = 1.0, top_k: int = 0) -> Explorer:
    """Next-token distribution and sampled continuations of ``prompt`` under a GPT-like ``model``
    (``predict_next(text, top_k)`` and ``generate(prompt, n, temperature, top_k, generator)``).

    Controls: ``prompt`` (text), ``temperature`` (0 = greedy), ``top_k`` (0 = no cut), ``seed``.
    The view lists the most likely next tokens before and after temperature/top-k, and
    ``n_samples`` continuations of ``max_new_tokens`` tokens drawn with those settings.
    """
    for name in ("predict_next", "generate"):
        if not callable(getattr(model, name, None)):
            raise ValueError(f"model: a {type(model).__name__} has no {name} method; pass a GPT model")
    if not isinstance(prompt, str):
        raise ValueError(f"prompt must be a str ({type(prompt).__name__} given)")
    max_new_tokens = checks.integer("max_new_tokens", max_new_tokens, min=1, max=64)
    n_samples = checks.integer("n_samples", n_samples, min=1, max=10)
    vocab = len(model.tokenizer) - len(model.banned_ids)                  # tokens that can be drawn
    controls = {
        "prompt": widgets.Text(value=prompt, description="prompt", continuous_update=False),
        "temperature": slider("temperature", checks.number("temperature", temperature, min=0.0, max=3.0),
                              0.0, 3.0, 0.1),
        "top_k": widgets.IntSlider(value=checks.integer("top_k", top_k, min=0, max=100), min=0, max=100,
                                   description="top-k (0 = all)", continuous_update=False,
                                   style={"description_width": "initial"}),
        "seed": seed_box(0),
    }
    cache: dict[str, list[tuple[str, float]]] = {}

    def render() -> str:
        text, t = controls["prompt"].value, float(controls["temperature"].value)
        k = int(controls["top_k"].value) or None
        if text not in cache:
            cache.clear()
            cache[text] = model.predict_next(text, top_k=vocab)           # all tokens, most likely first
        tokens = [tok for tok, _ in cache[text]]
        before = torch.tensor([p for _, p in cache[text]], dtype=torch.float64)
        after = reshape_distribution(before, t, None if k is None else min(k, vocab))
        rows = []
        for tok, p0, p1 in zip(tokens[:SHOWN], before[:SHOWN].tolist(), after[:SHOWN].tolist()):
            bar = f'<span style="display:inline-block;background:#1f77b4;width:{int(200 * p1)}px">&nbsp;</span>'
            rows.append(f"<tr><td><code>{html.escape(tok)}</code></td><td>{p0:.3f}</td><td>{p1:.3f}</td>"
                        f"<td style='text-align:left'>{bar}</td></tr>")
        rest0, rest1 = float(before[SHOWN:].sum()), float(after[SHOWN:].sum())
        rows.append(f"<tr><td><i>all others</i></td><td>{rest0:.3f}</td><td>{rest1:.3f}</td><td></td></tr>")
        device = next(model.parameters()).device
        g = torch.Generator(device=device).manual_seed(int(controls["seed"].value))
        samples = [model.generate(text, max_new_tokens, temperature=t, top_k=None if k is None else min(k, vocab),
                                  generator=g) for _ in range(n_samples)]
        lines = "".join(f"<li><code>{html.escape(text)}</code> <b>{html.escape(s)}</b></li>" for s in samples)
        return (f"<table><tr><th>next token</th><th>p (T=1)</th><th>p sampled</th><th></th></tr>{''.join(rows)}"
                f"</table><p>{n_samples} samples (T={t:g}, top-k={k or 'all'}):</p><ol>{lines}</ol>")

    return Explorer(controls, render, html=True, title="Sampling a language model: temperature and top-k")


__all__ = ["reshape_distribution", "sampling_explorer"]
