"""Batched image augmentations with per-sample random parameters.

Every op takes a float batch ``x`` (B, C, H, W) in [0, 1] with C in {1, 3} (values clearly outside,
such as [0, 255], raise a ValueError for CPU tensors; see ``_inputs.check_unit_range``), draws one set of
parameters *per sample* on ``x.device`` and applies it with tensor ops: one call augments the
whole batch on the GPU, and two identical images of a batch get different views. Each op applies
to a sample with probability ``p`` (drawn per sample). A seeded ``torch.Generator`` on
``x.device`` makes the output reproducible.

The maths follows ``torchvision.transforms.v2.functional`` (same grayscale weights, same HSV hue
shift, same Gaussian kernel, reflect padding), so a view equals torchvision's on that sample with
the same parameters - the tests check exactly that. Difference: ``random_resized_crop`` resizes
without antialiasing (bilinear ``grid_sample``), like most GPU SSL pipelines.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from sslkit import checks
from sslkit.pretext import _inputs, _random

# ITU-R 601 luma weights, as torchvision (0.2989 rather than 0.299, to match it bit for bit).
GRAY_WEIGHTS = (0.2989, 0.587, 0.114)


def _gray(x: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) -> (B, 1, H, W) luma; 1-channel input is returned as is."""
    if x.shape[1] == 1:
        return x
    r, g, b = x.unbind(1)
    return (r * GRAY_WEIGHTS[0]).add_(g, alpha=GRAY_WEIGHTS[1]).add_(b, alpha=GRAY_WEIGHTS[2]).unsqueeze(1)


def _per_sample(v: torch.Tensor) -> torch.Tensor:
    """(B,) -> (B, 1, 1, 1) to broadcast over an image batch."""
    return v[:, None, None, None]


# In-place convention (PyTorch's trailing underscore): ``color_jitter_``, ``random_grayscale_``,
# ``gaussian_blur_``, ``solarize_``, ``gaussian_noise_`` and ``cutout_`` modify the float batch they
# are given and check nothing (a ``ViewRecipe`` checks its settings once and owns a fresh buffer
# after the crop, so this saves one image-sized allocation per op, which on CPU is the main cost);
# the checked ops without the underscore pass them a copy.


# ----------------------------------------------------------------------------- geometry

def crop_boxes(batch_size: int, height: int, width: int, scale: tuple[float, float],
               ratio: tuple[float, float], generator: torch.Generator | None, device: torch.device
               ) -> torch.Tensor:
    """Per-sample crop boxes as torchvision's ``RandomResizedCrop.get_params`` draws them.

    Area fraction ~ U(scale), log aspect ratio ~ U(log ratio); 10 tries per sample (all drawn at
    once), the first one that fits is kept, else the central crop with the ratio clamped.
    Returns long (B, 4): top, left, h, w in pixels.
    """
    B, tries = batch_size, 10  # 10 tries: torchvision's value
    area = height * width * _random.uniform((B, tries), scale[0], scale[1], generator, device)
    aspect = _random.log_uniform((B, tries), ratio[0], ratio[1], generator, device)
    w = torch.round(torch.sqrt(area * aspect)).long()  # (B, tries)
    h = torch.round(torch.sqrt(area / aspect)).long()
    ok = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    first = ok.int().argmax(dim=1, keepdim=True)  # first fitting try (0 if none)
    w, h, found = w.gather(1, first)[:, 0], h.gather(1, first)[:, 0], ok.any(dim=1)
    # Fallback: central crop of the whole image, aspect clamped into `ratio`.
    in_ratio = width / height
    if in_ratio < ratio[0]:
        fw, fh = width, int(round(width / ratio[0]))
    elif in_ratio > ratio[1]:
        fw, fh = int(round(height * ratio[1])), height
    else:
        fw, fh = width, height
    w = torch.where(found, w, torch.full_like(w, fw))
    h = torch.where(found, h, torch.full_like(h, fh))
    top = _random.randint_below(height - h + 1, (B,), generator, device)
    left = _random.randint_below(width - w + 1, (B,), generator, device)
    top = torch.where(found, top, torch.full_like(top, (height - fh) // 2))
    left = torch.where(found, left, torch.full_like(left, (width - fw) // 2))
    return torch.stack([top, left, h, w], dim=1)


def crop_flip(x: torch.Tensor, boxes: torch.Tensor, flip: torch.Tensor | None,
              size: tuple[int, int]) -> torch.Tensor:
    """Crop ``boxes`` (B, 4) out of ``x``, resize to ``size`` and mirror where ``flip``: one grid_sample.
    The result has the memory format of ``x``.

    With ``align_corners=False`` normalised coordinate g maps to pixel ((g + 1) * H - 1) / 2, so
    output pixel i of a crop (top, h) resized to S samples pixel top + (i + 0.5) h / S - 0.5, which
    is ``F.interpolate(crop, S, mode="bilinear")``. A flip negates the x scale.
    """
    B, C, H, W = x.shape
    top, left, h, w = boxes.to(x.dtype).unbind(1)  # (B,) each
    sx, sy = w / W, h / H
    if flip is not None:
        sx = torch.where(flip, -sx, sx)
    # Axis-aligned, so build the (B, S, S, 2) grid from two 1-D ramps (what affine_grid computes
    # with theta = [[sx, 0, bx], [0, sy, by]], minus its batched matmul).
    ramp_y = (2 * torch.arange(size[0], dtype=x.dtype, device=x.device) + 1) / size[0] - 1  # (Sh,)
    ramp_x = (2 * torch.arange(size[1], dtype=x.dtype, device=x.device) + 1) / size[1] - 1  # (Sw,)
    gx = sx[:, None] * ramp_x + ((2 * left + w) / W - 1)[:, None]  # (B, Sw)
    gy = sy[:, None] * ramp_y + ((2 * top + h) / H - 1)[:, None]  # (B, Sh)
    grid = torch.stack(torch.broadcast_tensors(gx[:, None, :], gy[:, :, None]), dim=-1)  # (B, Sh, Sw, 2)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    # grid_sample returns the default layout; give the view x's (channels-last on CUDA, for the
    # backbone's convolutions). The ops after the crop work in place, so they keep it.
    return out.contiguous(memory_format=_inputs.memory_format(x))


def random_resized_crop(x: torch.Tensor, size: int | tuple[int, int] | None = None,
                        scale: tuple[float, float] = (0.08, 1.0), ratio: tuple[float, float] = (3 / 4, 4 / 3),
                        generator: torch.Generator | None = None) -> torch.Tensor:
    """Random crop of a random area fraction and aspect ratio per sample, resized to ``size``.

    Defaults are Inception's / SimCLR's: area 8%-100% of the image, aspect 3/4-4/3
    (Szegedy et al. 2015; Chen et al. 2020). ``size=None`` keeps the input size.
    """
    x, size = _check_crop(x, size, scale, ratio, generator)
    boxes = crop_boxes(x.shape[0], x.shape[2], x.shape[3], scale, ratio, generator, x.device)
    return crop_flip(x, boxes, None, size)


def _check_crop(x, size, scale, ratio, generator):
    _inputs.image_batch("x", x)
    _random.check_generator(generator, x.device)
    size = (x.shape[2], x.shape[3]) if size is None else _inputs.size_pair("size", size)
    lo, _ = checks.number_range("scale", scale, min=0.0, max=1.0)
    checks.number("scale[0]", lo, min=0.0, min_open=True)
    checks.number_range("ratio", ratio, min=0.0)
    checks.number("ratio[0]", ratio[0], min=0.0, min_open=True)
    return x, size


def horizontal_flip(x: torch.Tensor, p: float = 0.5, generator: torch.Generator | None = None) -> torch.Tensor:
    """Mirror each sample left-right with probability ``p`` (0.5: left and right equally likely)."""
    _inputs.image_batch("x", x)
    p = _inputs.probability("p", p)
    _random.check_generator(generator, x.device)
    flip = _random.bernoulli(x.shape[0], p, generator, x.device)
    return torch.where(flip[:, None, None, None], x.flip(-1), x)


# ----------------------------------------------------------------------------- colour

def _shift_hue_(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Rotate the HSV hue of (B, 3, H, W) in place by ``shift`` (B,) turns, keeping value and saturation.

    Hue in sixths of a turn: max = r -> (g - b) / chroma, max = g -> 2 + (b - r) / chroma,
    else 4 + (r - g) / chroma (torchvision's ``_rgb_to_hsv``). Back to RGB as
    channel = max - chroma * clamp(min(k, 4 - k), 0, 1), k = (n + 6 hue) mod 6, n = 5, 3, 1 for
    R, G, B - the same values as torchvision's six-sector table, in fewer passes.
    """
    r, g, b = x.unbind(1)
    maxc = x.amax(1)  # (B, H, W)
    chroma = x.amin(1).neg_().add_(maxc)
    inv = chroma.clamp(min=1e-12).reciprocal_()  # grey pixels: chroma 0, numerators 0, hue irrelevant
    # Branch-free select of the sector (float masks: a bool `where` is several times slower on CPU).
    is_r = (maxc == r).to(x.dtype)
    is_g = (maxc == g).to(x.dtype).mul_(1.0 - is_r)
    is_b = (1.0 - is_r).sub_(is_g)
    h6 = (g - b).mul_(is_r).addcmul_(b - r, is_g).addcmul_(r - g, is_b).mul_(inv)
    h6.add_(is_g, alpha=2.0).add_(is_b, alpha=4.0)
    h6 += (6.0 * shift)[:, None, None] + 12.0  # + 12 keeps it positive: |shift| <= 0.5, h6 >= -1
    for c, n in enumerate((5.0, 3.0, 1.0)):  # write channel by channel: h6 is still needed
        k = h6 + n
        k.sub_(torch.floor(k * (1.0 / 6.0)), alpha=6.0)  # k mod 6 (floor is faster than fmod on CPU)
        k = torch.minimum(k, 4.0 - k).clamp_(0.0, 1.0)
        x[:, c] = maxc.addcmul(chroma, k, value=-1.0)
    return x


def color_jitter_(x: torch.Tensor, brightness: float, contrast: float, saturation: float, hue: float,
                  p: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """:func:`color_jitter` in place on ``x`` (B, C, H, W), without argument checks: for recipes
    that checked their settings once and own ``x`` (a fresh crop). Returns ``x``."""
    B, dev = x.shape[0], x.device
    apply = _random.bernoulli(B, p, generator, dev)  # (B,)

    def factor(strength: float, centre: float) -> torch.Tensor:
        # Factors ~ U[max(0, 1 - s), 1 + s], hue ~ U[-s, s], as torchvision; identity where not applied.
        lo = max(0.0, centre - strength) if centre == 1.0 else centre - strength
        f = _random.uniform(B, lo, centre + strength, generator, dev, x.dtype)
        return torch.where(apply, f, torch.full_like(f, centre))

    b, c, s, h = factor(brightness, 1.0), factor(contrast, 1.0), factor(saturation, 1.0), factor(hue, 0.0)
    # Fixed order brightness -> contrast -> saturation -> hue (torchvision shuffles it per call;
    # a per-sample order would cost four masked passes for little gain). Clamp after each op as
    # torchvision does, so this is the same function of the same factors.
    if brightness > 0:
        x.mul_(_per_sample(b)).clamp_(0.0, 1.0)
    if contrast > 0:
        mean = _gray(x).mean(dim=(1, 2, 3))  # (B,) mean luma
        x.mul_(_per_sample(c)).add_(_per_sample((1 - c) * mean)).clamp_(0.0, 1.0)
    if x.shape[1] == 3 and saturation > 0:  # saturation and hue are no-ops on 1 channel (as PIL)
        gray = _gray(x)  # before scaling x in place
        x.mul_(_per_sample(s)).addcmul_(gray, _per_sample(1 - s)).clamp_(0.0, 1.0)
    if x.shape[1] == 3 and hue > 0:
        # Shift 0 where not applied: the HSV round trip then returns the pixel up to float rounding.
        _shift_hue_(x, h)
    return x


def color_jitter(x: torch.Tensor, brightness: float = 0.4, contrast: float = 0.4, saturation: float = 0.4,
                 hue: float = 0.1, p: float = 0.8, generator: torch.Generator | None = None) -> torch.Tensor:
    """Random brightness, contrast, saturation and hue per sample (applied with probability ``p``).

    Factors are drawn as torchvision's ``ColorJitter``: brightness/contrast/saturation multiply by
    U[1 - s, 1 + s], hue shifts by U[-hue, hue] turns of the HSV hue circle. Defaults 0.4/0.4/0.4/0.1
    and p = 0.8 are the usual SSL values (BYOL uses saturation 0.2; SimCLR's strength-1 setting is
    0.8/0.8/0.8/0.2). Saturation and hue do nothing on 1-channel images.
    """
    _inputs.image_batch("x", x)
    for name, v in (("brightness", brightness), ("contrast", contrast), ("saturation", saturation)):
        checks.number(name, v, min=0.0)
    checks.number("hue", hue, min=0.0, max=0.5)
    p = _inputs.probability("p", p)
    _random.check_generator(generator, x.device)
    return color_jitter_(x.clone(), brightness, contrast, saturation, hue, p, generator)


def random_grayscale(x: torch.Tensor, p: float = 0.2, generator: torch.Generator | None = None) -> torch.Tensor:
    """Replace a sample by its luma (kept 3-channel) with probability ``p`` (0.2: SimCLR/BYOL)."""
    _inputs.image_batch("x", x)
    p = _inputs.probability("p", p)
    _random.check_generator(generator, x.device)
    return random_grayscale_(x.clone(), p, generator)


def random_grayscale_(x: torch.Tensor, p: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """:func:`random_grayscale` in place on ``x``, without argument checks (see :func:`color_jitter_`)."""
    apply = _random.bernoulli(x.shape[0], p, generator, x.device)
    if x.shape[1] == 1:
        return x
    # lerp with weight 0 / 1 per sample: x stays, or becomes its luma (up to rounding), in place
    return x.lerp_(_gray(x).expand_as(x), _per_sample(apply.to(x.dtype)))


# ----------------------------------------------------------------------------- filters and noise

SHIFT_SUM_MAX_TAPS = 7  # up to this kernel size the blur is a sum of shifted copies, above a grouped conv


def default_kernel_size(height: int, width: int) -> int:
    """Odd blur kernel of ~10% of the image side, as SimCLR (23 px at 224, 3 px at 32); at least 3."""
    k = max(3, 2 * int(0.05 * min(height, width)) + 1)
    return min(k, 2 * (min(height, width) - 1) + 1)  # reflect padding needs pad < side


def gaussian_blur_(x: torch.Tensor, sigma: tuple[float, float], p: float, kernel_size: int | None = None,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """:func:`gaussian_blur` in place on ``x``, without argument checks (see :func:`color_jitter_`)."""
    B, C, H, W = x.shape
    apply = _random.bernoulli(B, p, generator, x.device)
    sig = _random.uniform(B, sigma[0], sigma[1], generator, x.device, dtype=x.dtype)  # (B,)
    k = default_kernel_size(H, W) if kernel_size is None else kernel_size
    if k == 1:
        return x
    half = k // 2
    t = torch.linspace(-half, half, k, dtype=x.dtype, device=x.device)  # as torchvision
    w = torch.exp(-0.5 * (t[None, :] / sig[:, None]) ** 2)
    w = w / w.sum(dim=1, keepdim=True)  # (B, k) one kernel per sample
    delta = (t == 0).to(x.dtype).expand_as(w)  # identity kernel where the blur is not applied
    w = torch.where(apply[:, None], w, delta)  # (B, k)
    xp = F.pad(x, (half, half, half, half), mode="reflect")  # (B, C, H + 2 half, W + 2 half)
    if k <= SHIFT_SUM_MAX_TAPS:
        # Few taps: sum of k shifted copies, weighted per sample (3-4x faster than a grouped conv
        # on CPU for 3 taps; a handful of elementwise kernels on GPU).
        wk = w[:, None, None, None, :]  # (B, 1, 1, 1, k)
        y = xp[..., 0:W] * wk[..., 0]  # along W: (B, C, H + 2 half, W)
        for j in range(1, k):
            y.addcmul_(xp[..., j:j + W], wk[..., j])
        out = y[:, :, 0:H] * wk[..., 0]  # along H: (B, C, H, W)
        for j in range(1, k):
            out.addcmul_(y[:, :, j:j + H], wk[..., j])
        return x.copy_(out)
    # Many taps: a grouped conv along W then along H, one group per (sample, channel).
    wc = w.repeat_interleave(C, dim=0)  # (B*C, k)
    y = F.conv2d(xp.reshape(1, B * C, H + 2 * half, W + 2 * half), wc[:, None, None, :], groups=B * C)
    y = F.conv2d(y, wc[:, None, :, None], groups=B * C)  # (1, B*C, H, W)
    return x.copy_(y.reshape(B, C, H, W))


def gaussian_blur(x: torch.Tensor, sigma: tuple[float, float] = (0.1, 2.0), p: float = 0.5,
                  generator: torch.Generator | None = None, kernel_size: int | None = None) -> torch.Tensor:
    """Gaussian blur with sigma ~ U(sigma) per sample, applied with probability ``p``.

    sigma in [0.1, 2.0] and p = 0.5 are SimCLR's (BYOL: p = 1.0 / 0.1 for its two views).
    ``kernel_size`` (odd) defaults to ~10% of the image side (:func:`default_kernel_size`).
    """
    _inputs.image_batch("x", x)
    lo, _ = checks.number_range("sigma", sigma, min=0.0)
    checks.number("sigma[0]", lo, min=0.0, min_open=True)
    p = _inputs.probability("p", p)
    if kernel_size is not None:
        checks.integer("kernel_size", kernel_size, min=1, max=2 * (min(x.shape[2:]) - 1) + 1)
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size={kernel_size} must be odd")
    _random.check_generator(generator, x.device)
    return gaussian_blur_(x.clone(), sigma, p, kernel_size, generator)


def solarize(x: torch.Tensor, threshold: float = 0.5, p: float = 0.2,
             generator: torch.Generator | None = None) -> torch.Tensor:
    """Invert pixels >= ``threshold`` with probability ``p`` per sample (0.5 / 0.2: BYOL's view 2)."""
    _inputs.image_batch("x", x)
    checks.number("threshold", threshold, min=0.0, max=1.0)
    p = _inputs.probability("p", p)
    _random.check_generator(generator, x.device)
    return solarize_(x.clone(), threshold, p, generator)


def solarize_(x: torch.Tensor, threshold: float, p: float, generator: torch.Generator | None = None
              ) -> torch.Tensor:
    """:func:`solarize` in place on ``x``, without argument checks (see :func:`color_jitter_`)."""
    apply = _random.bernoulli(x.shape[0], p, generator, x.device).to(x.dtype)  # (B,)
    # x -> 1 - x where x >= threshold: x + s (1 - 2x) with s in {0, 1} (arithmetic beats a bool where)
    s = (x >= threshold).to(x.dtype).mul_(_per_sample(apply))
    return x.addcmul_(s, 1.0 - 2.0 * x)


def gaussian_noise(x: torch.Tensor, std: float = 0.05, p: float = 1.0,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """Add N(0, std^2) pixel noise with probability ``p`` per sample, clipped to [0, 1].

    std 0.05 (5% of the range) is visible but keeps digits and shapes recognisable.
    """
    _inputs.image_batch("x", x)
    checks.number("std", std, min=0.0)
    p = _inputs.probability("p", p)
    _random.check_generator(generator, x.device)
    return gaussian_noise_(x.clone(), std, p, generator)


def gaussian_noise_(x: torch.Tensor, std: float, p: float, generator: torch.Generator | None = None
                    ) -> torch.Tensor:
    """:func:`gaussian_noise` in place on ``x``, without argument checks (see :func:`color_jitter_`)."""
    apply = _random.bernoulli(x.shape[0], p, generator, x.device)
    noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    scale = apply.to(x.dtype) * std  # (B,) 0 where not applied
    return x.addcmul_(noise, _per_sample(scale)).clamp_(0.0, 1.0)


def box_mask(height: int, width: int, top: torch.Tensor, left: torch.Tensor, h: torch.Tensor,
             w: torch.Tensor) -> torch.Tensor:
    """Bool (B, H, W), True inside the per-sample boxes (top, left, h, w are long (B,))."""
    rows = torch.arange(height, device=top.device)
    cols = torch.arange(width, device=top.device)
    in_r = (rows >= top[:, None]) & (rows < (top + h)[:, None])  # (B, H)
    in_c = (cols >= left[:, None]) & (cols < (left + w)[:, None])  # (B, W)
    return in_r[:, :, None] & in_c[:, None, :]


def cutout(x: torch.Tensor, size: float = 0.25, p: float = 0.5, generator: torch.Generator | None = None,
           fill: float = 0.0) -> torch.Tensor:
    """Zero a square of side ``size`` x image side at a random centre, probability ``p`` per sample.

    DeVries & Taylor (2017): the centre may fall near the border, so the square can be clipped.
    size 0.25 is their CIFAR-10 setting (16 px of 32 is CIFAR-10's best; 0.25 is milder for SSL).
    """
    _inputs.image_batch("x", x)
    checks.number("size", size, min=0.0, max=1.0)
    p = _inputs.probability("p", p)
    checks.number("fill", fill, min=0.0, max=1.0)
    _random.check_generator(generator, x.device)
    return cutout_(x.clone(), size, p, generator, fill)


def cutout_(x: torch.Tensor, size: float, p: float, generator: torch.Generator | None = None,
            fill: float = 0.0) -> torch.Tensor:
    """:func:`cutout` in place on ``x``, without argument checks (see :func:`color_jitter_`)."""
    B, _, H, W = x.shape
    apply = _random.bernoulli(B, p, generator, x.device)
    sh, sw = int(round(size * H)), int(round(size * W))
    cy = _random.randint_below(H, (B,), generator, x.device)
    cx = _random.randint_below(W, (B,), generator, x.device)
    top, left = (cy - sh // 2).clamp(min=0), (cx - sw // 2).clamp(min=0)
    bottom, right = (cy - sh // 2 + sh).clamp(max=H), (cx - sw // 2 + sw).clamp(max=W)
    mask = box_mask(H, W, top, left, bottom - top, right - left) & apply[:, None, None]  # (B, H, W)
    return x.masked_fill_(mask[:, None], fill)


__all__ = ["random_resized_crop", "horizontal_flip", "color_jitter", "random_grayscale", "gaussian_blur",
           "solarize", "gaussian_noise", "cutout", "crop_boxes", "crop_flip", "box_mask",
           "default_kernel_size", "GRAY_WEIGHTS", "color_jitter_", "random_grayscale_", "gaussian_blur_",
           "solarize_", "gaussian_noise_", "cutout_"]
