"""Masking explorers: image patches (random vs block) and BERT-style token masking."""
from __future__ import annotations

import html

import ipywidgets as widgets
import torch

from sslkit import checks
from sslkit.widgets.base import Explorer, regenerate_button, seed_box, slider
from sslkit.widgets.render import TITLE, as_images, draw_image, figure, overlay_patches, to_png


def patch_mask(x: torch.Tensor, patch_size: int, mask_ratio: float, mode: str,
               generator: torch.Generator) -> torch.Tensor:
    """(B, N) bool mask, True = hidden, over the patch grid of images x (B, C, H, W)."""
    from sslkit import pretext

    B, _, H, W = x.shape
    if mode == "random":
        return pretext.mask_indices(B, (H // patch_size) * (W // patch_size), mask_ratio, x.device,
                                    generator).mask
    return pretext.block_masking(B, (H // patch_size, W // patch_size), mask_ratio, device=x.device,
                                 generator=generator)


def masking_explorer(images: object, patch_size: int | None = None, mask_ratio: float = 0.75,
                     mode: str = "random", n: int = 4, seed: int = 0) -> Explorer:
    """Images with a fraction of their patches hidden: MAE's random masking vs BEiT's block masking.

    ``patch_size`` defaults to 1/8 of the image side (an 8x8 grid). Controls: mode, mask ratio, seed.
    """
    n = checks.integer("n", n, min=1, max=12)
    x = as_images(images, n)
    H, W = x.shape[-2:]
    p = checks.integer("patch_size", patch_size if patch_size is not None else max(1, min(H, W) // 8), min=1)
    if H % p or W % p:
        raise ValueError(f"patch_size={p} must divide the image size {H}x{W}")
    seed_w = seed_box(checks.integer("seed", seed))
    controls = {
        "mode": widgets.ToggleButtons(options=["random", "block"], value=checks.choice("mode", mode, ["random", "block"]),
                                      style={"button_width": "70px"}),
        "mask_ratio": slider("mask ratio", checks.number("mask_ratio", mask_ratio, min=0.0, max=0.95), 0.0, 0.95, 0.05),
        "seed": seed_w,
        "regenerate": regenerate_button(seed_w),
    }

    def render() -> bytes:
        g = torch.Generator(device=x.device).manual_seed(int(seed_w.value))
        ratio, mode_v = controls["mask_ratio"].value, controls["mode"].value
        mask = patch_mask(x, p, ratio, mode_v, g)  # (n, N)
        # 1.1 in (106 page px) per image row, as wide as the images' aspect asks, and wide enough
        # for the title with 1-2 images
        fig = figure(max(2.6, 1.1 * len(x) * W / H), 2.5)
        for i in range(len(x)):
            for row, img in enumerate((x[i], overlay_patches(x[i], mask[i], p))):
                draw_image(fig.add_subplot(2, len(x), row * len(x) + i + 1), img.cpu())
        fig.suptitle(f"{mode_v} masking: {int(mask[0].sum())} of {mask.shape[1]} patches hidden", fontsize=TITLE)
        return to_png(fig)

    return Explorer(controls, render, title="What the encoder gets to see")


_STYLE = {  # how each outcome of BERT's 80/10/10 rule is drawn
    "mask": "background:#ffd6d6;border:1px solid #d33",
    "random": "background:#ffe9b3;border:1px solid #c80",
    "keep": "background:#d8f5d0;border:1px solid #393",
}


def token_masking_html(ids: torch.Tensor, inputs: torch.Tensor, chosen: torch.Tensor, tokenizer: object,
                       pad_id: int | None = None) -> str:
    """HTML of sequences with the chosen tokens highlighted: [MASK] (red), random (amber), kept (green)."""
    vocab = getattr(tokenizer, "vocab", None)

    def word(i: int) -> str:
        return html.escape(vocab[i] if vocab is not None else tokenizer.decode([i], skip_special=False))

    lines = []
    for seq, inp, ch in zip(ids.tolist(), inputs.tolist(), chosen.tolist()):
        spans = []
        for orig, new, c in zip(seq, inp, ch):
            if pad_id is not None and orig == pad_id:
                continue
            if not c:
                spans.append(word(orig))
                continue
            kind = "mask" if new == getattr(tokenizer, "mask_id", -1) else ("keep" if new == orig else "random")
            shown = word(new) if kind != "random" else f"{word(new)}<sub>({word(orig)})</sub>"
            spans.append(f'<span style="{_STYLE[kind]};padding:0 2px;border-radius:3px" '
                         f'title="target: {word(orig)}">{shown}</span>')
        lines.append(f'<p style="font-family:monospace;line-height:1.8">{" ".join(spans)}</p>')
    legend = (f'<span style="{_STYLE["mask"]}">[MASK] (80%)</span> '
              f'<span style="{_STYLE["random"]}">random word (10%, original below)</span> '
              f'<span style="{_STYLE["keep"]}">unchanged (10%)</span> - the model must predict all coloured words')
    return f'<div style="font-size:13px">{legend}{"".join(lines)}</div>'


def token_masking_viewer(data: object, n: int = 3, mask_ratio: float = 0.15, seed: int = 0,
                         max_len: int = 40) -> Explorer:
    """BERT's masking (Devlin et al. 2019) on a text Dataset: which words a masked LM must predict.

    Controls: mask ratio and seed. The first ``max_len`` tokens of ``n`` sequences are shown.
    """
    from sslkit import pretext

    if getattr(data, "kind", None) != "text" or getattr(data, "tokenizer", None) is None:
        raise ValueError(f"data must be a text Dataset with a tokenizer (e.g. sslkit.data.load('corpus')); "
                         f"got {type(data).__name__}")
    n = checks.integer("n", n, min=1, max=20)
    max_len = checks.integer("max_len", max_len, min=1)
    tok = data.tokenizer
    ids = data.tokens[:n, :max_len]
    seed_w = seed_box(checks.integer("seed", seed))
    controls = {
        "mask_ratio": slider("mask ratio", checks.number("mask_ratio", mask_ratio, min=0.05, max=1.0), 0.05, 1.0, 0.05),
        "seed": seed_w,
        "regenerate": regenerate_button(seed_w),
    }

    def render() -> str:
        g = torch.Generator(device=ids.device).manual_seed(int(seed_w.value))
        inputs, _, chosen = pretext.mask_tokens(ids, len(tok), tok.special_ids, tok.mask_id,
                                                controls["mask_ratio"].value, generator=g)
        return token_masking_html(ids, inputs, chosen, tok, pad_id=tok.pad_id)

    return Explorer(controls, render, html=True, title="BERT's 80/10/10 masking")
