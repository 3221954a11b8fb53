"""Classic pretext tasks that come with their own targets: rotation, jigsaw, denoising,
inpainting, colourisation and next-step prediction. All batched, per-sample random, on x.device.
"""
from __future__ import annotations

import functools
import math

import torch

from sslkit import checks
from sslkit.pretext import _inputs, _random
from sslkit.pretext.views import GRAY_WEIGHTS, box_mask


# ----------------------------------------------------------------------------- rotation

@functools.lru_cache(maxsize=32)
def _rotation_index(h: int, w: int, device: torch.device) -> torch.Tensor:
    """(4, H*W) long on ``device``: flat source pixel of each output pixel for k quarter turns (as
    torch.rot90). Built there directly and cached per (H, W, device): no copy per call."""
    idx = torch.arange(h * w, device=device).reshape(h, w)
    return torch.stack([torch.rot90(idx, k, dims=(0, 1)).reshape(-1) for k in range(4)])


def rotate_by(x: torch.Tensor, k: int | torch.Tensor) -> torch.Tensor:
    """Rotate each square image of (B, C, H, H) by k[b] quarter turns (``torch.rot90`` direction).

    ``k`` is an int (same for all) or a long (B,) tensor; ``rotate_by(rotate_by(x, k), -k)`` is x.
    One gather with a per-sample index, so each sample gets its own angle in one op.
    """
    checks.tensor("x", x, ndim=4)  # any channel count: rotation does not look at channels
    B, C, H, W = x.shape
    if H != W:
        raise ValueError(f"x must hold square images to rotate by 90 degrees; got {H}x{W}")
    if isinstance(k, torch.Tensor):
        checks.tensor("k", k, ndim=1, dtypes="int")
        if k.shape[0] != B:
            raise ValueError(f"k has {k.shape[0]} entries; x has batch size {B}")
    else:
        k = torch.full((B,), checks.integer("k", k), dtype=torch.long, device=x.device)
    table = _rotation_index(H, W, x.device)  # (4, H*W)
    idx = table[k.to(x.device).remainder(4)]  # (B, H*W)
    out = x.reshape(B, C, H * W).gather(2, idx[:, None, :].expand(B, C, H * W))
    return out.reshape(B, C, H, W).contiguous(memory_format=_inputs.memory_format(x))  # x's layout


def rotate(x: torch.Tensor, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """RotNet (Gidaris et al. 2018): rotate each image by a random multiple of 90 degrees.

    Returns ``(rotated, labels)`` with labels in {0, 1, 2, 3} = quarter turns, the class to predict.
    """
    _inputs.image_batch("x", x, unit_range=False)  # geometry only: any pixel values
    _random.check_generator(generator, x.device)
    labels = torch.randint(0, 4, (x.shape[0],), generator=generator, device=x.device)
    return rotate_by(x, labels), labels


# ----------------------------------------------------------------------------- jigsaw

def _all_permutations(n: int) -> torch.Tensor:
    """(n!, n) every permutation of range(n), built by inserting n-1 at each place of those of n-1."""
    perms = torch.zeros(1, 0, dtype=torch.long)
    for m in range(n):
        new = torch.full((perms.shape[0], 1), m, dtype=torch.long)
        perms = torch.cat([torch.cat([perms[:, :i], new, perms[:, i:]], dim=1) for i in range(m + 1)])
    return perms


def jigsaw_permutations(k: int, grid: int = 3, seed: int = 0) -> torch.Tensor:
    """``k`` permutations of the grid*grid tiles chosen for large Hamming distance -> (k, grid*grid).

    Noroozi & Favaro (2016), "maximal" selection: start from a random permutation, then repeatedly
    add the permutation whose minimum Hamming distance to those chosen so far is largest (ties
    broken at random). Far-apart permutations make the classes easy to tell apart only by really
    locating the tiles. Candidates: all (grid^2)! permutations up to 3x3 (9! = 362880); for larger
    grids a random pool of 100000. Cached; a CPU tensor (move it with ``.to(device)``).
    """
    grid = checks.integer("grid", grid, min=2, max=8)
    n = grid * grid
    limit = math.factorial(n)
    k = checks.integer("k", k, min=1, max=min(limit, 100_000))
    seed = checks.integer("seed", seed)
    return _select_permutations(k, n, seed).clone()  # clone: callers may modify their copy


@functools.lru_cache(maxsize=16)
def _select_permutations(k: int, n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    if n <= 9:
        cand = _all_permutations(n).to(torch.int8)  # (n!, n)
    else:  # 16! is too many to enumerate
        cand = torch.rand(100_000, n, generator=g).argsort(dim=1).to(torch.int8)
    cols = cand.t().contiguous()  # (n, n!): one row per tile position, fast to compare

    def dist(i: int) -> torch.Tensor:  # (n!,) Hamming distance of every candidate to candidate i
        d = torch.zeros(cols.shape[1], dtype=torch.int16)
        for j in range(n):
            d += cols[j] != cols[j, i]
        return d

    first = int(torch.randint(0, cand.shape[0], (1,), generator=g))
    chosen = [first]
    min_dist = dist(first)  # distance to the chosen set
    tie = torch.rand(cand.shape[0], generator=g) * 0.5  # < 1: breaks ties only
    for _ in range(k - 1):
        nxt = int((min_dist + tie).argmax())
        chosen.append(nxt)
        min_dist = torch.minimum(min_dist, dist(nxt))
    return cand[chosen].long()


def check_permutations(permutations: torch.Tensor, grid: int, name: str = "permutations", *,
                       values: bool = True) -> torch.Tensor:
    """``permutations`` must be (K >= 1, grid*grid) ints, every row a permutation of 0..grid*grid-1.

    The value check (``values=True``) reads them back to the host, a sync on an accelerator: do it
    once where the permutations are made, then call ``jigsaw(..., validate=False)`` every step.
    """
    grid = checks.integer("grid", grid, min=1)
    checks.tensor(name, permutations, ndim=2, dtypes="int")
    G = grid * grid
    if permutations.shape[1] != G or permutations.shape[0] < 1:
        raise ValueError(f"{name} has shape {tuple(permutations.shape)}; grid={grid} needs (K, {G})")
    if values and permutations.device.type != "meta" and not torch.equal(
            permutations.sort(dim=1).values.cpu(), torch.arange(G).expand(permutations.shape[0], G)):
        raise ValueError(f"every row of {name} must be a permutation of 0..{G - 1}")
    return permutations


def jigsaw(x: torch.Tensor, permutations: torch.Tensor, grid: int = 3, generator: torch.Generator | None = None,
           tile_size: int | None = None, *, validate: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Jigsaw puzzle (Noroozi & Favaro 2016): cut each image into grid x grid cells, shuffle them
    with a random permutation from ``permutations`` (K, grid*grid); the label is its index.

    Output position i holds cell ``permutations[label][i]`` (row-major cell numbering), so
    ``cells[:, perm] = tiles`` puts the puzzle back together. With ``tile_size`` smaller than the
    cell, each tile is a random crop of its cell (random per tile): the gap and jitter stop the
    network from matching tile edges instead of learning what the pieces show (Noroozi used
    64 px tiles in 75 px cells). If the image side is not a multiple of ``grid`` the central
    grid-divisible region is used.

    ``validate=True`` checks that every row of ``permutations`` really is a permutation
    (:func:`check_permutations`), which reads them back to the host - a sync on an accelerator.
    A training step that checked its permutations once when it made them passes
    ``validate=False``: then only their shape is checked, and the call makes no host-device sync.

    Returns ``(tiles (B, grid*grid, C, t, t), labels (B,))``.
    """
    _inputs.image_batch("x", x, unit_range=False)  # geometry only: any pixel values
    grid = checks.integer("grid", grid, min=1)
    check_permutations(permutations, grid, values=validate)
    G = grid * grid
    B, C, H, W = x.shape
    ch, cw = H // grid, W // grid
    if ch < 1 or cw < 1:
        raise ValueError(f"grid={grid} is larger than the image ({H}x{W})")
    t_h, t_w = (ch, cw) if tile_size is None else (checks.integer("tile_size", tile_size, min=1, max=min(ch, cw)),) * 2
    _random.check_generator(generator, x.device)
    labels = torch.randint(0, permutations.shape[0], (B,), generator=generator, device=x.device)
    y0, x0 = (H - grid * ch) // 2, (W - grid * cw) // 2  # central grid-divisible region
    cells = x[:, :, y0:y0 + grid * ch, x0:x0 + grid * cw].reshape(B, C, grid, ch, grid, cw)
    cells = cells.permute(0, 2, 4, 1, 3, 5).reshape(B, G, C, ch, cw)  # (B, G, C, ch, cw)
    if (t_h, t_w) != (ch, cw):  # random crop of each cell, per sample and per tile
        oy = _random.randint_below(ch - t_h + 1, (B, G), generator, x.device)
        ox = _random.randint_below(cw - t_w + 1, (B, G), generator, x.device)
        rows = oy[..., None] + torch.arange(t_h, device=x.device)  # (B, G, t_h)
        cols = ox[..., None] + torch.arange(t_w, device=x.device)  # (B, G, t_w)
        flat = (rows[..., :, None] * cw + cols[..., None, :]).reshape(B, G, 1, t_h * t_w)
        cells = cells.reshape(B, G, C, ch * cw).gather(3, flat.expand(B, G, C, t_h * t_w))
        cells = cells.reshape(B, G, C, t_h, t_w)
    perm = permutations.to(x.device)[labels]  # (B, G)
    tiles = cells.gather(1, perm[:, :, None, None, None].expand_as(cells))
    return tiles, labels


# ----------------------------------------------------------------------------- corruption

def gaussian_corrupt(x: torch.Tensor, std: float, generator: torch.Generator | None = None,
                     clip: bool = True) -> torch.Tensor:
    """Denoising autoencoder input (Vincent et al. 2008): x + N(0, std^2), clipped to [0, 1] if ``clip``."""
    checks.tensor("x", x, dtypes="float")
    if clip:  # clipping to [0, 1] would silently flatten [0, 255] images
        _inputs.check_unit_range("x", x)
    checks.number("std", std, min=0.0)
    _random.check_generator(generator, x.device)
    noisy = x + std * torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    return noisy.clamp_(0.0, 1.0) if clip else noisy


def salt_and_pepper(x: torch.Tensor, amount: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Set a fraction ``amount`` of pixels (all channels of a pixel together) to 0 or 1, half each."""
    _inputs.image_batch("x", x)
    checks.number("amount", amount, min=0.0, max=1.0)
    _random.check_generator(generator, x.device)
    B, _, H, W = x.shape
    u = torch.rand((B, 1, H, W), generator=generator, device=x.device)
    salt = torch.rand((B, 1, H, W), generator=generator, device=x.device) < 0.5
    out = torch.where((u < amount) & salt, torch.ones_like(x), x)
    return torch.where((u < amount) & ~salt, torch.zeros_like(x), out)


def inpaint_holes(x: torch.Tensor, n_holes: int = 1, size: float = 0.25, generator: torch.Generator | None = None,
                  fill: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Context-encoder style holes (Pathak et al. 2016): ``n_holes`` squares of side ``size`` x
    the image side, fully inside the image, set to ``fill``; the model predicts what was there.

    Returns ``(corrupted, hole_mask)`` with hole_mask (B, 1, H, W) bool, True inside a hole.
    """
    _inputs.image_batch("x", x)
    n_holes = checks.integer("n_holes", n_holes, min=1)
    checks.number("size", size, min=0.0, max=1.0, min_open=True)
    checks.number("fill", fill, min=0.0, max=1.0)
    _random.check_generator(generator, x.device)
    B, _, H, W = x.shape
    sh, sw = max(1, round(size * H)), max(1, round(size * W))
    top = _random.randint_below(H - sh + 1, (B, n_holes), generator, x.device)
    left = _random.randint_below(W - sw + 1, (B, n_holes), generator, x.device)
    hs = torch.full_like(top.reshape(-1), sh)
    ws = torch.full_like(top.reshape(-1), sw)
    holes = box_mask(H, W, top.reshape(-1), left.reshape(-1), hs, ws).reshape(B, n_holes, H, W)
    hole_mask = holes.any(dim=1, keepdim=True)  # (B, 1, H, W)
    return x.masked_fill(hole_mask, fill), hole_mask


def colorization(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Colourisation (Zhang et al. 2016): input the luma (B, 1, H, W), target the colour image.

    The target stays RGB (B, 3, H, W) in [0, 1] so a plain regression loss works; Zhang et al.
    predict quantised Lab colours instead, which avoids greyish averages.
    """
    _inputs.image_batch("x", x, channels=(3,))
    r, g, b = x.unbind(1)
    gray = (r * GRAY_WEIGHTS[0] + g * GRAY_WEIGHTS[1] + b * GRAY_WEIGHTS[2]).unsqueeze(1)
    return gray, x


# ----------------------------------------------------------------------------- sequences

def next_step(seq: torch.Tensor, horizon: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Next-step targets: ``target[..., t]`` is the step ``horizon`` after ``context[..., t]``.

    Signals (B, C, T) -> (B, C, T - h) each; clips (B, T, C, H, W) -> (B, T - h, C, H, W) each
    (next-frame prediction); tokens (B, L) -> (B, L - h) each (language modelling). The last
    context step's target is the step just past the visible sequence (CPC / next-frame).
    """
    checks.tensor("seq", seq, ndim=(2, 3, 5))
    time_dim = 2 if seq.ndim == 3 else 1  # signals are (B, C, T); tokens and clips are time-first
    T = seq.shape[time_dim]
    h = checks.integer("horizon", horizon, min=1, max=max(1, T - 1))
    if T - h < 1:
        raise ValueError(f"seq has {T} steps; horizon={h} needs at least {h + 1}")
    return seq.narrow(time_dim, 0, T - h), seq.narrow(time_dim, h, T - h)


__all__ = ["rotate", "rotate_by", "jigsaw_permutations", "jigsaw", "gaussian_corrupt", "salt_and_pepper",
           "inpaint_holes", "colorization", "next_step"]
