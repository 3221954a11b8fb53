"""Augmentation explorer: pairs of views of the same images under adjustable augmentations."""
from __future__ import annotations

import ipywidgets as widgets
import torch

from sslkit import checks
from sslkit.widgets.base import Explorer, regenerate_button, seed_box, slider
from sslkit.widgets.render import as_images, image_grid


def recipe_from_controls(base: object, min_scale: float, flip: bool, colour: float, gray_p: float,
                         blur_p: float, solarize_p: float, cutout_p: float) -> object:
    """A :class:`sslkit.pretext.ViewRecipe` from the explorer's control values.

    ``colour`` is SimCLR's colour strength s: brightness = contrast = saturation = 0.8 s, hue = 0.2 s
    (capped at 0.5, a half turn), applied to 80% of views as in SimCLR.
    """
    return base.replace(scale=(min_scale, 1.0), flip_p=0.5 if flip else 0.0,
                        brightness=0.8 * colour, contrast=0.8 * colour, saturation=0.8 * colour,
                        hue=min(0.2 * colour, 0.5), jitter_p=0.8 if colour > 0 else 0.0,
                        gray_p=gray_p, blur_p=blur_p, solarize_p=solarize_p, cutout_p=cutout_p)


def augmentation_explorer(images: object, n: int = 4, seed: int = 0, min_scale: float = 0.08,
                          flip: bool = True, colour: float = 1.0, gray_p: float = 0.2, blur_p: float = 0.5,
                          solarize_p: float = 0.0, cutout_p: float = 0.0) -> Explorer:
    """Show ``n`` images next to two random views of each (a positive pair for contrastive learning).

    Controls: smallest crop area, flip on/off, colour-jitter strength, and the probabilities of
    grayscale, blur, solarize and cutout; ``seed`` / "regenerate" draw new views. Starts from
    SimCLR's recipe (Chen et al. 2020). ``images``: (B, C, H, W) float/uint8 or an image Dataset.
    """
    from sslkit import pretext  # lazy: widgets import fast

    n = checks.integer("n", n, min=1, max=16)
    x = as_images(images, n)
    base = pretext.ViewRecipe()
    seed_w = seed_box(checks.integer("seed", seed))
    controls: dict[str, widgets.Widget] = {
        "min_scale": slider("crop ≥ area", checks.number("min_scale", min_scale, min=0.01, max=1.0), 0.05, 1.0, 0.05),
        "flip": widgets.Checkbox(value=bool(flip), description="flip", indent=False,
                                 layout=widgets.Layout(width="70px")),
        "colour": slider("colour strength", checks.number("colour", colour, min=0.0, max=2.0), 0.0, 2.0, 0.1),
        "gray_p": slider("p(grayscale)", checks.number("gray_p", gray_p, min=0, max=1), 0.0, 1.0, 0.1),
        "blur_p": slider("p(blur)", checks.number("blur_p", blur_p, min=0, max=1), 0.0, 1.0, 0.1),
        "solarize_p": slider("p(solarize)", checks.number("solarize_p", solarize_p, min=0, max=1), 0.0, 1.0, 0.1),
        "cutout_p": slider("p(cutout)", checks.number("cutout_p", cutout_p, min=0, max=1), 0.0, 1.0, 0.1),
        "seed": seed_w,
        "regenerate": regenerate_button(seed_w),
    }

    def render() -> bytes:
        c = {k: w.value for k, w in controls.items() if k not in ("seed", "regenerate")}
        recipe = recipe_from_controls(base, **c)
        g = torch.Generator(device=x.device).manual_seed(int(seed_w.value))
        v1, v2 = recipe(x, g), recipe(x, g)  # (n, C, H, W) each: independent draws, same images
        return image_grid([[x[i], v1[i], v2[i]] for i in range(len(x))], ["image", "view 1", "view 2"])

    return Explorer(controls, render, title="Two views of each image = a positive pair")
