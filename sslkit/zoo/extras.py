"""Lesson-specific measurements stored in a zoo card (``card["extras"][NAME]``).

Each function takes ``(method, init, train, test)`` - the trained method, the same method before
training (BatchNorm recalibrated), both splits on the method's device - and returns plain numbers
measured on the first :data:`SAMPLES` test samples with fixed random draws (seed 0), so a notebook
can quote them and check its own live numbers against the same protocol.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

NAMES = ("mae_hidden_patches", "dino_attention_on_object", "next_frame_mse", "mlm_masked_accuracy")
SAMPLES = 256  # test samples per measurement: seconds on a CPU, a stable mean


def _first(data: Any) -> torch.Tensor:
    return torch.arange(min(SAMPLES, len(data)), device=data.device)


def _r(v: torch.Tensor | float) -> float:
    return round(float(v), 5)


@torch.no_grad()
def mae_hidden_patches(method: Any, init: Any, train: Any, test: Any) -> dict[str, Any]:
    """Mean squared error on the *hidden* pixels: the MAE, its untrained start, and the mean colour
    of each image's visible pixels pasted into the holes (the baseline a reconstruction must beat)."""
    x = test.batch(_first(test))                                          # (B, C, H, W)
    out: dict[str, Any] = {"mask_ratio": method.config.mask_ratio, "images": len(x)}
    errors = {}
    for row, m in (("model", method), ("random_init", init)):
        g = torch.Generator(device=x.device).manual_seed(0)              # the same masks for both
        _, rec, mask = m.reconstruct(x, generator=g)                      # mask (B, 1, H, W)
        hidden = mask.expand_as(x).float()
        errors[row] = _r(((rec - x) ** 2 * hidden).sum() / hidden.sum())
    visible = 1 - hidden
    mean_colour = (x * visible).sum((2, 3), keepdim=True) / visible.sum((2, 3), keepdim=True)  # (B, C, 1, 1)
    errors["mean_visible_colour"] = _r(((mean_colour - x) ** 2 * hidden).sum() / hidden.sum())
    out["hidden_mse"] = errors
    return out


@torch.no_grad()
def dino_attention_on_object(method: Any, init: Any, train: Any, test: Any) -> dict[str, Any]:
    """Share of the last block's CLS attention (mean over heads, over patches) that falls on the
    shape: sum over patches of attention x the fraction of the patch the shape covers. ``uniform``
    is what attention spread evenly over the patches would give."""
    from sslkit.data.shapes import coverage
    if test.name != "shapes":
        raise ValueError(f"dino_attention_on_object needs the shapes data (its object masks); got {test.name!r}")
    idx = _first(test)
    x = test.batch(idx)                                                   # (B, C, H, W)
    f = {k: v[idx].cpu() for k, v in test.factors.items()}
    cover = coverage(test.labels[idx].cpu(), f["size"], f["x"], f["y"], f["rotation"], x.shape[-1])
    shares = {}
    for row, m in (("model", method), ("random_init", init)):
        vit = getattr(m, "teacher_backbone", m.backbone)                  # DINO evaluates the teacher
        _, attn = vit.forward_features(x, return_attention=True)          # (B, heads, 1+N, 1+N)
        a = attn[:, :, 0, 1:].mean(1)                                     # (B, N): CLS -> patches
        a = a / a.sum(1, keepdim=True)
        p = vit.patch_size
        patch_cover = F.avg_pool2d(cover, p).flatten(1).to(a.device)      # (B, N) row-major patches
        shares[row] = _r((a * patch_cover).sum(1).mean())
    shares["uniform"] = _r(patch_cover.mean())
    return {"images": len(x), "attention_on_object": shares}


@torch.no_grad()
def next_frame_mse(method: Any, init: Any, train: Any, test: Any) -> dict[str, Any]:
    """MSE of the last frame predicted from the frames before it, against copying the frame before."""
    clips = test.batch(_first(test))                                      # (B, T, C, H, W)
    target = clips[:, -1]
    mse = {row: _r(F.mse_loss(m.predict_next(clips[:, :-1]), target))
           for row, m in (("model", method), ("random_init", init))}
    mse["copy_last"] = _r(F.mse_loss(clips[:, -2], target))
    return {"clips": len(clips), "last_frame_mse": mse}


@torch.no_grad()
def mlm_masked_accuracy(method: Any, init: Any, train: Any, test: Any) -> dict[str, Any]:
    """Top-1 accuracy on the chosen tokens whose input is ``[MASK]`` (the answer is hidden; the
    10% left unchanged, whose answer is visible, are not counted), against always guessing the
    most frequent training token."""
    from sslkit import pretext
    ids = test.tokens[_first(test)]                                       # (B, L)
    tk = method.tokenizer
    special = sorted(int(i) for i in tk.special_ids)
    g = torch.Generator(device=ids.device).manual_seed(0)
    inputs, _, chosen = pretext.mask_tokens(ids, len(tk), special, tk.mask_id,
                                            method.config.mask_ratio, generator=g)
    hidden = chosen & (inputs == tk.mask_id)                              # (B, L)
    acc = {}
    for row, m in (("model", method), ("random_init", init)):
        logits = m.head(m.backbone.forward_tokens(inputs))                # (B, L, V)
        logits[..., special] = float("-inf")
        acc[row] = _r((logits.argmax(-1) == ids)[hidden].float().mean())
    counts = torch.bincount(train.tokens.flatten(), minlength=len(tk))
    counts[special] = 0
    acc["most_frequent_token"] = _r((ids[hidden] == counts.argmax()).float().mean())
    return {"sequences": len(ids), "hidden_tokens": int(hidden.sum()), "accuracy": acc}
