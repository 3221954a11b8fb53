"""View recipes: the augmentation pipelines of the joint-embedding papers, batched on-device.

A :class:`ViewRecipe` holds every op's settings; calling it on a batch gives one view per sample
with fresh per-sample parameters. Crop and flip share a single ``grid_sample``; the colour ops run
in place on that fresh tensor, so a view costs about one image-sized buffer.

    >>> v1, v2 = simclr_views(x, generator=g)            # SimCLR: two views from one recipe
    >>> v1, v2 = byol_views(x)                            # BYOL: asymmetric blur / solarize
    >>> v1, v2 = cifar_views(x)                           # SimCLR's CIFAR-10 setting (32 px)
    >>> crops = multicrop(x, n_global=2, n_local=6)       # DINO / SwAV multi-crop
    >>> v1, v2 = weak_views(digits)                       # tiny 8x8 images

``auto_views(image_size, paper)`` is the one place that decides what a method's ``views="auto"``
means at an image size; ``recipe_pair(name)`` gives the two :class:`ViewRecipe` of a named recipe.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch

from sslkit import checks
from sslkit.pretext import _inputs, _random
from sslkit.pretext import views as V
from sslkit.pretext.audio import SPECTROGRAM


@dataclass
class ViewRecipe:
    """Settings of one view pipeline: crop+flip -> colour jitter -> grayscale -> blur -> solarize
    -> noise -> cutout. Each op applies per sample with its probability ``*_p``; p = 0 skips it.

    Defaults are SimCLR's ImageNet recipe (Chen et al. 2020, appendix A) at colour strength 1.
    ``repr`` lists only the settings that differ from these defaults; ``to_dict()`` gives all of
    them as plain JSON values (the run config records it).
    """
    size: int | tuple[int, int] | None = None  # output size; None keeps the input size
    scale: tuple[float, float] = (0.08, 1.0)  # crop area fraction (Inception / SimCLR)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)  # crop aspect ratio range (Inception / SimCLR)
    flip_p: float = 0.5  # left-right mirror: natural images are mirror-symmetric in distribution
    brightness: float = 0.8  # SimCLR colour strength s = 1: 0.8 s for brightness/contrast/saturation
    contrast: float = 0.8
    saturation: float = 0.8
    hue: float = 0.2  # 0.2 s turns of the hue circle
    jitter_p: float = 0.8  # SimCLR applies colour distortion to 80% of views
    gray_p: float = 0.2  # SimCLR / BYOL: 20% of views become grayscale (defeats colour-histogram shortcuts)
    blur_p: float = 0.5  # SimCLR: blur half the views
    blur_sigma: tuple[float, float] = (0.1, 2.0)  # SimCLR / BYOL sigma range (pixels at 224 px)
    blur_kernel: int | None = None  # None: ~10% of the side (SimCLR)
    solarize_p: float = 0.0  # BYOL uses 0.2 on its second view only
    solarize_threshold: float = 0.5  # BYOL: invert pixels above mid-grey
    noise_std: float = 0.0  # pixel noise, used by the weak recipe only
    noise_p: float = 1.0
    cutout_p: float = 0.0  # off in the SSL recipes; handy for masking-style exercises
    cutout_size: float = 0.25

    def __post_init__(self) -> None:
        if self.size is not None:
            _inputs.size_pair("size", self.size)
        lo, _ = checks.number_range("scale", self.scale, min=0.0, max=1.0)
        checks.number("scale[0]", lo, min=0.0, min_open=True)
        lo, _ = checks.number_range("ratio", self.ratio, min=0.0)
        checks.number("ratio[0]", lo, min=0.0, min_open=True)
        for name in ("brightness", "contrast", "saturation", "noise_std"):
            checks.number(name, getattr(self, name), min=0.0)
        checks.number("hue", self.hue, min=0.0, max=0.5)
        for name in ("flip_p", "jitter_p", "gray_p", "blur_p", "solarize_p", "noise_p", "cutout_p"):
            _inputs.probability(name, getattr(self, name))
        lo, _ = checks.number_range("blur_sigma", self.blur_sigma, min=0.0)
        checks.number("blur_sigma[0]", lo, min=0.0, min_open=True)
        if self.blur_kernel is not None:
            checks.integer("blur_kernel", self.blur_kernel, min=1)
            if self.blur_kernel % 2 == 0:
                raise ValueError(f"blur_kernel={self.blur_kernel} must be odd")
        checks.number("solarize_threshold", self.solarize_threshold, min=0.0, max=1.0)
        checks.number("cutout_size", self.cutout_size, min=0.0, max=1.0)

    def __repr__(self) -> str:
        changed = [f"{f.name}={getattr(self, f.name)!r}" for f in dataclasses.fields(self)
                   if getattr(self, f.name) != f.default]
        return f"ViewRecipe({', '.join(changed)})"

    def to_dict(self) -> dict[str, Any]:
        """Every setting as JSON-friendly values (tuples become lists)."""
        return {f.name: list(v) if isinstance(v := getattr(self, f.name), tuple) else v
                for f in dataclasses.fields(self)}

    def replace(self, **changes) -> "ViewRecipe":
        """A copy with some settings changed (unknown names raise ValueError)."""
        known = {f.name for f in dataclasses.fields(self)}
        for name in changes:
            checks.choice("setting", name, sorted(known))
        return dataclasses.replace(self, **changes)

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """One view of every sample of ``x`` (B, C, H, W) -> (B, C, *size)."""
        _inputs.image_batch("x", x)
        _random.check_generator(generator, x.device)
        B, C, H, W = x.shape
        size = (H, W) if self.size is None else _inputs.size_pair("size", self.size)
        if self.blur_kernel is not None and self.blur_p > 0 and self.blur_kernel > 2 * min(size) - 1:
            raise ValueError(f"blur_kernel={self.blur_kernel} is too large for views of size {size}; "
                             f"allowed: odd values <= {2 * min(size) - 1}")
        boxes = V.crop_boxes(B, H, W, self.scale, self.ratio, generator, x.device)  # (B, 4)
        flip = _random.bernoulli(B, self.flip_p, generator, x.device) if self.flip_p > 0 else None
        v = V.crop_flip(x, boxes, flip, size)  # (B, C, *size), a fresh tensor
        if self.jitter_p > 0:
            v = V.color_jitter_(v, self.brightness, self.contrast, self.saturation, self.hue,
                                self.jitter_p, generator)                          # in place on v
        if self.gray_p > 0:
            v = V.random_grayscale_(v, self.gray_p, generator)
        if self.blur_p > 0:
            v = V.gaussian_blur_(v, self.blur_sigma, self.blur_p, self.blur_kernel, generator)
        if self.solarize_p > 0:
            v = V.solarize_(v, self.solarize_threshold, self.solarize_p, generator)
        if self.noise_p > 0 and self.noise_std > 0:
            v = V.gaussian_noise_(v, self.noise_std, self.noise_p, generator)
        if self.cutout_p > 0:
            v = V.cutout_(v, self.cutout_size, self.cutout_p, generator, 0.0)
        return v


# SimCLR (Chen et al. 2020): both views from the same recipe (the defaults above).
SIMCLR = ViewRecipe()
# SimCLR's CIFAR-10 setting (appendix B.9): colour strength 0.5 (0.4, 0.4, 0.4, 0.1) and no blur -
# at 32 px a blur with sigma up to 2 pixels wipes out most of the object. Crops, flips, jitter
# probability and grayscale stay as on ImageNet.
CIFAR = ViewRecipe(brightness=0.4, contrast=0.4, saturation=0.4, hue=0.1, blur_p=0.0)
# BYOL (Grill et al. 2020, table 6): weaker colour (0.4, 0.4, 0.2, 0.1), and asymmetric views:
# view 1 always blurred, never solarized; view 2 rarely blurred (0.1), solarized 20% of the time.
BYOL_1 = ViewRecipe(brightness=0.4, contrast=0.4, saturation=0.2, hue=0.1, blur_p=1.0, solarize_p=0.0)
BYOL_2 = BYOL_1.replace(blur_p=0.1, solarize_p=0.2)
# Tiny images (<= 16 px; 8x8 digits): gentle geometry - keep most of the image (a 64% area crop of
# an 8x8 digit is a ~1-pixel shift plus a slight zoom; a bigger crop cuts strokes away and changes
# the digit), near-square aspect, NO flips (a mirrored 2, 3, 5, 7 or 9 is not that digit, so flip
# invariance would teach the wrong thing), no blur (one blur pixel is 1/8 of a digit) - but the
# CIFAR colour distortion and grayscale all the same: without them matching two views by their
# colours alone is easy, and the network learns colour instead of shape (SimCLR's ablation). On
# 1-channel images only brightness and contrast act. Light pixel noise is one more nuisance to ignore.
WEAK = CIFAR.replace(scale=(0.64, 1.0), ratio=(0.8, 1.25), flip_p=0.0, noise_std=0.05, noise_p=0.5)

# What views="auto" means, by image side (the smaller of H and W):
SMALL_MAX_SIZE = 16   # <= 16 px: WEAK (digits)
CIFAR_MAX_SIZE = 32   # 17-32 px: CIFAR for the two-view methods (shapes, CIFAR-10); above: the paper's
PAPERS = ("simclr", "byol", "multicrop")
# Named two-view recipes: (recipe of view 1, recipe of view 2).
# "spectrogram": for log-mel spectrograms (sslkit.pretext.audio; sslkit.create picks it for spectrogram data).
NAMED = {"simclr": (SIMCLR, SIMCLR), "cifar": (CIFAR, CIFAR), "byol": (BYOL_1, BYOL_2), "weak": (WEAK, WEAK),
         "spectrogram": (SPECTROGRAM, SPECTROGRAM)}


def auto_views(image_size: int, paper: str = "simclr", n_local: int | None = None) -> str:
    """The recipe that ``views="auto"`` stands for at ``image_size`` px, for a method following ``paper``.

    The one place every method's "auto" is decided:

    * <= 16 px: ``"weak"`` (gentle crops, no flip or blur, colour jitter and grayscale kept),
      also for multi-crop methods (a local crop of an 8x8 image is a 3x3 blob);
    * 17-32 px: ``"cifar"`` (SimCLR's CIFAR-10 setting) for two-view methods, whichever paper they
      follow (SimCLR, MoCo, SimSiam, BYOL, Barlow Twins, VICReg); ``"multicrop"`` for DINO;
    * larger: the paper's own recipe, ``paper`` itself ("simclr", "byol" or "multicrop").

    A multi-crop method that asks for local crops (``n_local`` > 0) gets ``"multicrop"`` at every size.
    """
    image_size = checks.integer("image_size", image_size, min=1)
    checks.choice("paper", paper, PAPERS)
    if paper == "multicrop" and n_local:
        return "multicrop"
    if image_size <= SMALL_MAX_SIZE:
        return "weak"
    if paper == "multicrop":
        return "multicrop"
    return "cifar" if image_size <= CIFAR_MAX_SIZE else paper


def recipe_pair(name: str) -> tuple[ViewRecipe, ViewRecipe]:
    """The two recipes (view 1, view 2) of a named recipe: "simclr", "cifar", "byol", "weak" or
    "spectrogram" (a ``sslkit.pretext.audio.SpectrogramViews``)."""
    checks.choice("views", name, list(NAMED))
    return NAMED[name]


def _two(recipe1: ViewRecipe, recipe2: ViewRecipe, x, size, generator, overrides):
    if size is not None:
        overrides = {**overrides, "size": size}
    r1, r2 = recipe1.replace(**overrides), recipe2.replace(**overrides)
    return r1(x, generator), r2(x, generator)


def simclr_views(x: torch.Tensor, size: int | tuple[int, int] | None = None,
                 generator: torch.Generator | None = None, **overrides) -> tuple[torch.Tensor, torch.Tensor]:
    """Two SimCLR views of every sample: crop + flip + jitter (0.8) + grayscale (0.2) + blur (0.5).

    ``overrides`` change :class:`ViewRecipe` settings, e.g. ``blur_p=0.0`` for CIFAR as SimCLR did.
    """
    return _two(SIMCLR, SIMCLR, x, size, generator, overrides)


def byol_views(x: torch.Tensor, size: int | tuple[int, int] | None = None,
               generator: torch.Generator | None = None, **overrides) -> tuple[torch.Tensor, torch.Tensor]:
    """Two BYOL views: view 1 blur p=1.0, no solarize; view 2 blur p=0.1, solarize p=0.2."""
    return _two(BYOL_1, BYOL_2, x, size, generator, overrides)


def cifar_views(x: torch.Tensor, size: int | tuple[int, int] | None = None,
                generator: torch.Generator | None = None, **overrides) -> tuple[torch.Tensor, torch.Tensor]:
    """Two views with SimCLR's CIFAR-10 setting: crop + flip + jitter at strength 0.5 + grayscale, no blur."""
    return _two(CIFAR, CIFAR, x, size, generator, overrides)


def weak_views(x: torch.Tensor, size: int | tuple[int, int] | None = None,
               generator: torch.Generator | None = None, **overrides) -> tuple[torch.Tensor, torch.Tensor]:
    """Two views for tiny images (8x8 digits): small crop/shift, no flip or blur, colour jitter at
    strength 0.5 and grayscale (as :data:`CIFAR`), light pixel noise."""
    return _two(WEAK, WEAK, x, size, generator, overrides)


def crop_sizes(height: int, width: int, patch_size: int = 1
               ) -> tuple[tuple[int, int], tuple[int, int]]:
    """Default multi-crop sizes (global, local) as (h, w) for images of ``height`` x ``width``:
    global = the image, local = 96/224 of it (DINO's 224 px / 96 px), both rounded to whole
    ``patch_size`` patches so a ViT can read them (global down, local to the nearest; at least one
    patch and 2 px)."""
    p = checks.integer("patch_size", patch_size, min=1)

    def whole(n: float) -> int:                            # nearest multiple of p, >= max(p, 2)
        return max(p, 2, round(n / p) * p)
    return (height // p * p, width // p * p), (whole(height * 96 / 224), whole(width * 96 / 224))


def multicrop_recipes(image_size: int | tuple[int, int], n_global: int = 2, n_local: int = 4,
                      global_size: int | tuple[int, int] | None = None,
                      local_size: int | tuple[int, int] | None = None,
                      global_scale: tuple[float, float] = (0.4, 1.0),
                      local_scale: tuple[float, float] = (0.05, 0.4),
                      patch_size: int = 1) -> list[ViewRecipe]:
    """The :class:`ViewRecipe` of each crop :func:`multicrop` makes from images of ``image_size``."""
    H, W = _inputs.size_pair("image_size", image_size)
    checks.integer("n_global", n_global, min=1)
    checks.integer("n_local", n_local, min=0)
    default_global, default_local = crop_sizes(H, W, patch_size)
    gsize = default_global if global_size is None else _inputs.size_pair("global_size", global_size)
    lsize = default_local if local_size is None else _inputs.size_pair("local_size", local_size)
    g1 = BYOL_1.replace(size=gsize, scale=tuple(global_scale))
    g2 = BYOL_2.replace(size=gsize, scale=tuple(global_scale))
    local = BYOL_1.replace(size=lsize, scale=tuple(local_scale), blur_p=0.5)
    return [g1 if i % 2 == 0 else g2 for i in range(n_global)] + [local] * n_local


def multicrop(x: torch.Tensor, n_global: int = 2, n_local: int = 4,
              global_size: int | tuple[int, int] | None = None,
              local_size: int | tuple[int, int] | None = None, generator: torch.Generator | None = None,
              global_scale: tuple[float, float] = (0.4, 1.0), local_scale: tuple[float, float] = (0.05, 0.4),
              patch_size: int = 1) -> list[torch.Tensor]:
    """Multi-crop (SwAV, Caron et al. 2020; DINO, Caron et al. 2021): global views then local views.

    Scales are DINO's defaults: global crops cover 40-100% of the image (enough context to name
    it), local crops 5-40% (a part: "local-to-global" correspondence is the training signal).
    Sizes default to the input size and 96/224 of it for local crops (DINO's 224 px / 96 px), at
    least 2 px, in whole ``patch_size`` patches (:func:`crop_sizes`). Global views alternate BYOL's asymmetric blur/solarize (view 1: blur 1.0; view 2:
    blur 0.1, solarize 0.2); local views are blurred half the time, as in DINO.
    :func:`multicrop_recipes` gives the recipes themselves.
    """
    _inputs.image_batch("x", x)
    recipes = multicrop_recipes(tuple(x.shape[2:]), n_global, n_local, global_size, local_size,
                                global_scale, local_scale, patch_size)
    return [r(x, generator) for r in recipes]


def to_config(recipe: Any) -> Any:
    """A method's ``view_recipe`` as JSON-friendly values for a run's config: a :class:`ViewRecipe`
    becomes its ``to_dict()``, another dataclass recipe its fields, a list or tuple a list of those,
    a string stays, any other callable becomes its ``repr``, None stays None."""
    if recipe is None or isinstance(recipe, (str, int, float, bool)):
        return recipe
    if isinstance(recipe, ViewRecipe):
        return recipe.to_dict()
    if dataclasses.is_dataclass(recipe) and not isinstance(recipe, type):   # e.g. SpectrogramViews
        return dataclasses.asdict(recipe)
    if isinstance(recipe, (list, tuple)):
        return [to_config(r) for r in recipe]
    return repr(recipe)


__all__ = ["ViewRecipe", "simclr_views", "cifar_views", "byol_views", "weak_views", "multicrop",
           "multicrop_recipes", "auto_views", "recipe_pair", "to_config", "SIMCLR", "CIFAR", "BYOL_1",
           "BYOL_2", "WEAK", "NAMED", "SMALL_MAX_SIZE", "CIFAR_MAX_SIZE"]
