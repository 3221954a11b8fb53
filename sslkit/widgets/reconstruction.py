"""Reconstruction explorer: a trained masked autoencoder filling in what it did not see."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from sslkit import checks
from sslkit.widgets.base import Explorer, regenerate_button, seed_box, slider
from sslkit.widgets.render import as_images, image_grid, overlay_patches

# reconstruct(images, mask_ratio, generator) returns either
#   (masked, reconstruction, pixel_mask (B, 1, H, W))  - the kit's MAE.reconstruct, or
#   (reconstruction, patch_mask (B, N))                 - with patch_size given.
Reconstruct = Callable[[torch.Tensor, float, torch.Generator], tuple[torch.Tensor, ...]]


def _pixel_mask(out: tuple[Any, ...], x: torch.Tensor, patch_size: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """(reconstruction (B, C, H, W), pixel mask (B, 1, H, W) bool) from either return form."""
    if len(out) == 3:
        return out[1], out[2].bool()
    if len(out) != 2:
        raise ValueError(f"reconstruct must return (reconstruction, mask) or (masked, reconstruction, mask); "
                         f"got {len(out)} values")
    if patch_size is None:
        raise ValueError("patch_size is needed to draw a (B, N) patch mask")
    recon, mask = out
    pix = torch.stack([overlay_patches(torch.zeros_like(x[i, :1]), mask[i], patch_size, shade=1.0) > 0
                       for i in range(len(x))])
    return recon, pix


def reconstruction_explorer(reconstruct: Reconstruct | object, images: object, patch_size: int | None = None,
                            mask_ratio: float = 0.75, n: int = 4, seed: int = 0) -> Explorer:
    """Rows of (input, masked input, reconstruction, reconstruction with the visible patches pasted back).

    ``reconstruct`` is a model with a ``reconstruct(x, mask_ratio, generator)`` method (the kit's
    MAE) or such a function; see ``Reconstruct`` above for what it may return. The mask-ratio
    slider re-masks the images and runs the model again.
    """
    fn = getattr(reconstruct, "reconstruct", reconstruct)
    if not callable(fn):
        raise ValueError(f"reconstruct={reconstruct!r} must be a function or have a reconstruct() method")
    if patch_size is None:
        patch_size = getattr(reconstruct, "patch_size", None) or getattr(
            getattr(reconstruct, "backbone", None), "patch_size", None)
    p = None if patch_size is None else checks.integer("patch_size", int(patch_size), min=1)
    n = checks.integer("n", n, min=1, max=12)
    x = as_images(images, n)
    params = list(reconstruct.parameters()) if hasattr(reconstruct, "parameters") else []
    x = x.to(params[0].device) if params else x
    seed_w = seed_box(checks.integer("seed", seed))
    controls = {
        "mask_ratio": slider("mask ratio", checks.number("mask_ratio", mask_ratio, min=0.0, max=0.95), 0.05, 0.95, 0.05),
        "seed": seed_w,
        "regenerate": regenerate_button(seed_w),
    }

    def render() -> bytes:
        g = torch.Generator(device=x.device).manual_seed(int(seed_w.value))
        with torch.no_grad():
            out = fn(x, controls["mask_ratio"].value, g)
        recon, pix = _pixel_mask(tuple(out), x, p)  # (n, C, H, W), (n, 1, H, W)
        recon = recon.float().clamp(0, 1)
        masked = torch.where(pix, torch.full_like(x, 0.85), x)  # hidden patches in light grey
        pasted = torch.where(pix, recon, x)
        rows = [[x[i], masked[i], recon[i], pasted[i]] for i in range(len(x))]
        return image_grid(rows, ["input", "masked", "output", "output + visible"])

    return Explorer(controls, render, title="Masked autoencoder: reconstruct the hidden patches")
