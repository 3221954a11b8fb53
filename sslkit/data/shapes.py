"""``shapes``: procedurally drawn coloured shapes on textured backgrounds, with known factors.

Each image shows one shape (the label) whose colour, size, position, rotation and background are
drawn at random and returned in ``Dataset.factors`` - so a notebook can ask what a representation
is *invariant* to (colour? position?) and what it *encodes*, which real photos cannot answer.

Drawing is vectorised: every pixel of every image is tested against its shape's signed inside-test
on a shared coordinate grid, in chunks of images; no Python loop over pixels or samples. Images are
drawn at 2x resolution and average-pooled (light antialiasing).

Factor units: ``x``, ``y`` (shape centre) and ``size`` (circumradius) are fractions of the image
side, ``rotation`` is in radians, ``colour`` and ``background`` index ``meta["factor_values"]``.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from sslkit import checks
from sslkit.data.base import Dataset
from sslkit.data.registry import register

CLASSES = ["circle", "square", "triangle", "cross", "star", "ring"]
PALETTE = {  # saturated colours that stay distinguishable on every (dark-ish) background
    "red": (0.90, 0.15, 0.15), "green": (0.20, 0.80, 0.20), "blue": (0.25, 0.40, 1.00),
    "yellow": (0.95, 0.85, 0.10), "magenta": (0.90, 0.20, 0.85), "cyan": (0.10, 0.85, 0.90),
    "orange": (1.00, 0.55, 0.05), "white": (0.95, 0.95, 0.95),
}
BACKGROUNDS = ["plain", "noise", "stripes", "checker", "gradient"]
DEFAULT_N = {"train": 4000, "test": 1000}
SUPERSAMPLE = 2   # draw at 2x and average-pool: smooth edges at the cost of 4x pixels
CHUNK = 256       # images drawn at once: bounds peak memory (~CHUNK * (2*size)^2 floats per temp)
SIZE_RANGE = (0.2, 0.36)  # circumradius / image side: small enough to fit, large enough to see


def _circle(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return u * u + v * v <= 1.0


def _square(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return torch.maximum(u.abs(), v.abs()) <= 0.75  # side 1.5: area close to the circle's


def _triangle(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    # equilateral, circumradius 1 = 3 half-planes at distance 0.5 (the inradius) from the centre;
    # the vertices point along angles pi/2, 7pi/6, 11pi/6
    inside = torch.ones_like(u, dtype=torch.bool)
    for k in range(3):
        a = math.pi / 2 + 2 * math.pi * k / 3
        inside &= (u * math.cos(a) + v * math.sin(a)) >= -0.5
    return inside


def _cross(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    au, av = u.abs(), v.abs()
    arm = 0.3  # half-width of the bars
    return ((au <= arm) & (av <= 1.0)) | ((av <= arm) & (au <= 1.0))


def _star(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    # 5 tips at radius 1 (angles 2pi k/5), inner vertices at radius 0.45 in between. Fold the
    # angle into one half-tip sector, then one half-plane test against the edge tip T=(1, 0) ->
    # inner vertex V at angle pi/5.
    sector = 2 * math.pi / 5
    a = sector / 2 - (torch.atan2(v, u).remainder(sector) - sector / 2).abs()  # in [0, pi/5]
    rho = torch.sqrt(u * u + v * v)
    px, py = rho * torch.cos(a), rho * torch.sin(a)
    vx, vy = 0.45 * math.cos(sector / 2), 0.45 * math.sin(sector / 2)
    return (vx - 1.0) * py - vy * (px - 1.0) >= 0  # (V - T) x (P - T) >= 0: the origin's side


def _ring(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    r2 = u * u + v * v
    return (r2 <= 1.0) & (r2 >= 0.36)  # inner radius 0.6: a ring 0.4 circumradii thick


_INSIDE = [_circle, _square, _triangle, _cross, _star, _ring]  # same order as CLASSES


def coverage(label: torch.Tensor, size: torch.Tensor, x: torch.Tensor, y: torch.Tensor,
             rotation: torch.Tensor, image_size: int) -> torch.Tensor:
    """Fraction of each pixel covered by its image's shape: float (B, 1, H, W) in [0, 1].

    Tests SUPERSAMPLE^2 points per pixel and averages them (antialiasing). Each shape's inside-test
    runs only on the images of that shape; all factors are (B,) in image units."""
    s = image_size * SUPERSAMPLE
    grid = (torch.arange(s, dtype=torch.float32) + 0.5) / s  # (S,) sample points in (0, 1)
    out = torch.zeros(len(label), 1, image_size, image_size)
    for k, test in enumerate(_INSIDE):
        idx = (label == k).nonzero().squeeze(1)
        if len(idx) == 0:
            continue
        cos = (torch.cos(rotation[idx]) / size[idx]).view(-1, 1, 1)  # (b, 1, 1) rotate + scale
        sin = (torch.sin(rotation[idx]) / size[idx]).view(-1, 1, 1)
        dx = grid.view(1, 1, s) - x[idx].view(-1, 1, 1)  # (b, 1, S) offsets from the centre
        dy = grid.view(1, s, 1) - y[idx].view(-1, 1, 1)  # (b, S, 1)
        u = cos * dx + sin * dy  # (b, S, S) rotated by -rotation, in circumradius units
        v = cos * dy - sin * dx
        out[idx] = F.avg_pool2d(test(u, v).unsqueeze(1).float(), SUPERSAMPLE)
    return out


def background(kind: torch.Tensor, image_size: int, g: torch.Generator) -> torch.Tensor:
    """Grey-level textures (B, 1, H, W) in [0, 0.45] - darker than every palette colour."""
    b, n = len(kind), image_size
    grid = (torch.arange(n, dtype=torch.float32) + 0.5) / n  # (H,) pixel centres in (0, 1)
    yy, xx = grid.view(1, n, 1), grid.view(1, 1, n)
    # every parameter is drawn for every image, so the stream does not depend on the kinds
    level = 0.05 + 0.25 * torch.rand(b, 1, 1, generator=g)  # (B, 1, 1) base grey
    angle = torch.rand(b, 1, 1, generator=g) * math.pi
    freq = 3 + 5 * torch.rand(b, 1, 1, generator=g)  # stripes / checks per image side
    noise = torch.rand(b, n, n, generator=g)
    out = level.expand(b, n, n).clone()  # "plain"
    for k, name in enumerate(BACKGROUNDS):
        i = (kind == k).nonzero().squeeze(1)
        if name == "plain" or len(i) == 0:
            continue
        along = xx * torch.cos(angle[i]) + yy * torch.sin(angle[i])  # (b, H, W) along a direction
        if name == "noise":
            out[i] += 0.2 * noise[i]
        elif name == "stripes":
            out[i] += 0.15 * (torch.sin(2 * math.pi * freq[i] * along) > 0)
        elif name == "checker":
            out[i] += 0.15 * ((torch.floor(freq[i] * xx) + torch.floor(freq[i] * yy)) % 2)
        else:  # gradient
            out[i] += 0.15 * along.clamp(0, 1)
    return out.clamp_(0, 0.45).unsqueeze(1)


def draw(label: torch.Tensor, colour: torch.Tensor, size: torch.Tensor, x: torch.Tensor,
         y: torch.Tensor, rotation: torch.Tensor, background_kind: torch.Tensor, image_size: int,
         generator: torch.Generator) -> torch.Tensor:
    """Render images uint8 (B, 3, image_size, image_size) from per-sample factors (all (B,))."""
    alpha = coverage(label, size, x, y, rotation, image_size)               # (B, 1, H, W)
    rgb = torch.tensor(list(PALETTE.values()))[colour].view(-1, 3, 1, 1)    # (B, 3, 1, 1)
    img = background(background_kind, image_size, generator) * (1 - alpha) + rgb * alpha
    return (img * 255).round_().clamp_(0, 255).to(torch.uint8)              # (B, 3, H, W)


@register("shapes", kind="image", splits=("train", "test"), embedded=True,
          description="procedural 32x32 RGB shapes (6 classes) with factors colour, size, x, y, "
                      "rotation, background")
def build(split: str, root: str, seed: int, n: int | None = None, size: int = 32) -> Dataset:
    """Draw the ``shapes`` split.

    Args:
        split: "train" or "test"; they use different random streams derived from ``seed``.
        root: unused (generated in code).
        n: number of images (default 4000 for train, 1000 for test).
        size: image height = width in pixels, 8..256.
    """
    n = checks.integer("n", DEFAULT_N[split] if n is None else n, min=1, max=1_000_000)
    size = checks.integer("size", size, min=8, max=256)
    g = torch.Generator().manual_seed((2 * seed + (split == "test")) % 2**63)
    label = torch.randint(len(CLASSES), (n,), generator=g)
    colour = torch.randint(len(PALETTE), (n,), generator=g)
    bg = torch.randint(len(BACKGROUNDS), (n,), generator=g)
    radius = SIZE_RANGE[0] + (SIZE_RANGE[1] - SIZE_RANGE[0]) * torch.rand(n, generator=g)
    # centre anywhere that keeps the whole shape (unit-disc circumradius) inside the image
    x = radius + (1 - 2 * radius) * torch.rand(n, generator=g)
    y = radius + (1 - 2 * radius) * torch.rand(n, generator=g)
    rotation = 2 * math.pi * torch.rand(n, generator=g)
    images = torch.cat([
        draw(label[i:i + CHUNK], colour[i:i + CHUNK], radius[i:i + CHUNK], x[i:i + CHUNK],
             y[i:i + CHUNK], rotation[i:i + CHUNK], bg[i:i + CHUNK], size, g)
        for i in range(0, n, CHUNK)])
    factors = {"colour": colour, "size": radius, "x": x, "y": y, "rotation": rotation,
               "background": bg}
    return Dataset(name="shapes", split=split, kind="image", x=images, labels=label,
                   classes=list(CLASSES), factors=factors,
                   meta={"source": "generated by sslkit.data.shapes", "licence": "MIT (generated)",
                         "seed": seed, "size": size,
                         "factor_values": {"colour": list(PALETTE), "background": list(BACKGROUNDS)},
                         "factor_units": {"size": "circumradius / image side",
                                          "x": "centre / image side", "y": "centre / image side",
                                          "rotation": "radians"}})
