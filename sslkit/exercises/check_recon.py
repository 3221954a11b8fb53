"""Checkers and typical mistakes for the reconstruction exercises of notebook 04: patchify,
masked_mse and mae_decoder_input."""
from __future__ import annotations

import torch

from sslkit.exercises.core import Mistake, Reporter, rand, variant


# ---- patchify ------------------------------------------------------------------------------------
def _patchify(x, patch_size, *, order=(0, 2, 4, 3, 5, 1), plain=False):
    B, C, H, W = x.shape
    p = patch_size
    if plain:
        return x.reshape(B, -1, p * p * C)
    return x.reshape(B, C, H // p, p, W // p, p).permute(*order).reshape(B, (H // p) * (W // p), p * p * C)


PATCHIFY_MISTAKES = {
    "channels first inside a patch": Mistake(
        "Inside a patch the numbers go pixel by pixel and each pixel keeps its channels together: "
        "(row, column, channel) order, channels last.", variant(_patchify, order=(0, 2, 4, 1, 3, 5))),
    "a plain reshape": Mistake(
        "A reshape alone only cuts the flat memory into pieces, and the pixels of one patch are not "
        "next to each other in memory. Split each image side into (patches, pixels within a patch) and "
        "reorder the axes before flattening.", variant(_patchify, plain=True)),
    "patches numbered column by column": Mistake(
        "Patches are numbered row by row: left to right along the top row of patches, then the next row, "
        "like reading text.", variant(_patchify, order=(0, 4, 2, 3, 5, 1))),
    "pixels column by column": Mistake(
        "Inside a patch the pixels go row by row as well (all pixels of its first row, then the second).",
        variant(_patchify, order=(0, 2, 4, 5, 3, 1))),
}


def check_patchify(r: Reporter) -> None:
    r.values("one 4x4 grey image, patch 2", torch.arange(16.0).reshape(1, 1, 4, 4), 2, what="patches")
    r.values("RGB 8x8, patch 4", rand(2, 3, 8, 8, seed=100), 4, what="patches")
    r.values("non-square RGB 6x9, patch 3", rand(2, 3, 6, 9, seed=101), 3, what="patches")
    r.values("patch 1 (every pixel a patch)", rand(1, 3, 2, 2, seed=102), 1, what="patches")
    r.values("float64 keeps float64", rand(1, 2, 4, 4, seed=103, dtype=torch.float64), 2, what="patches")


# ---- masked_mse ----------------------------------------------------------------------------------
def _mse(pred, target, mask, norm_pix=False, *, where="masked", per_pixel="mean", denominator="masked",
         use_norm=True, norm_pred=False, unbiased=True, empty="0"):
    if norm_pix and use_norm:
        mean, var = target.mean(-1, keepdim=True), target.var(-1, keepdim=True, unbiased=unbiased)
        target = (target - mean) / (var + 1e-6).sqrt()
        if norm_pred:
            pm, pv = pred.mean(-1, keepdim=True), pred.var(-1, keepdim=True, unbiased=unbiased)
            pred = (pred - pm) / (pv + 1e-6).sqrt()
    err = (pred - target).pow(2)
    per_patch = err.mean(-1) if per_pixel == "mean" else err.sum(-1)        # (B, N)
    m = {"masked": mask, "visible": ~mask, "all": torch.ones_like(mask)}[where].to(per_patch.dtype)
    total = (per_patch * m).sum()
    if denominator == "all":
        return total / m.numel()
    return total / (m.sum().clamp_min(1.0) if empty == "0" else m.sum())


MASKED_MSE_MISTAKES = {
    "all patches": Mistake(
        "MAE's loss averages over the hidden patches only: the visible ones were given to the encoder, so "
        "predicting them is trivial and would only dilute the signal.", variant(_mse, where="all", empty="nan")),
    "mask the wrong way round": Mistake(
        "In the mask, True marks the *removed* (hidden) patches, and those are the ones to reconstruct.",
        variant(_mse, where="visible")),
    "squared errors summed over the pixels": Mistake(
        "Each patch's error is the *mean* squared error over its pixels, not the sum.",
        variant(_mse, per_pixel="sum")),
    "divided by all patches": Mistake(
        "Average over the hidden patches: divide by how many patches are hidden, not by the number of all "
        "patches.", variant(_mse, denominator="all")),
    "norm_pix ignored": Mistake(
        "When norm_pix is on, each *target* patch is first normalised by its own mean and standard deviation.",
        variant(_mse, use_norm=False)),
    "prediction normalised too": Mistake(
        "Only the targets are normalised; the prediction stays as it is (the network learns to predict "
        "normalised patches).", variant(_mse, norm_pred=True)),
    "biased variance in norm_pix": Mistake(
        "norm_pix uses the unbiased variance of each patch (dividing by the number of values minus 1), as "
        "MAE does.", variant(_mse, unbiased=False)),
    "NaN when nothing is hidden": Mistake(
        "When no patch is hidden there is nothing to reconstruct: the loss should be 0, not 0 / 0.",
        variant(_mse, empty="nan")),
}


def check_masked_mse(r: Reporter) -> None:
    g = torch.Generator().manual_seed(11)
    mask = torch.rand(3, 10, generator=g) < 0.6
    mask[:, 0] = True  # at least one hidden patch per image
    half = torch.tensor([[True, False, True, False], [False, True, True, False]])
    r.values("half the patches hidden", rand(2, 4, 6, seed=12), rand(2, 4, 6, seed=13), half, False, what="loss")
    r.values("random mask (B=3, N=10, P=12)", rand(3, 10, 12, seed=14), rand(3, 10, 12, seed=15), mask, False,
             what="loss")
    r.values("norm_pix=True", rand(3, 10, 12, seed=16), 2 + 3 * rand(3, 10, 12, seed=17), mask, True, what="loss")
    r.values("nothing hidden gives 0", rand(2, 5, 4, seed=18), rand(2, 5, 4, seed=19),
             torch.zeros(2, 5, dtype=torch.bool), False, what="loss")
    r.gradients("differentiable with the right gradients", rand(2, 5, 3, seed=20), rand(2, 5, 3, seed=21),
                mask[:2, :5], False, wrt=(0,))


# ---- mae_decoder_input ---------------------------------------------------------------------------
def _decoder_input(kept, mask_token, ids_restore, *, unshuffle=True, inverse=False, mask_first=False,
                   zeros=False):
    B, K, D = kept.shape
    N = ids_restore.shape[1]
    fill = torch.zeros(B, N - K, D, dtype=kept.dtype) if zeros else mask_token.expand(B, N - K, D)
    seq = torch.cat([fill, kept] if mask_first else [kept, fill], dim=1)
    if not unshuffle:
        return seq
    index = ids_restore.argsort(dim=1) if inverse else ids_restore
    return seq.gather(1, index.unsqueeze(-1).expand(-1, -1, D))


DECODER_INPUT_MISTAKES = {
    "not unshuffled": Mistake(
        "The encoded tokens come in shuffled order (the kept ones first); the decoder needs every token back "
        "at its original position, which is what ids_restore encodes.", variant(_decoder_input, unshuffle=False)),
    "shuffled again": Mistake(
        "ids_restore undoes the shuffle: for each original position it gives where that token sits in the "
        "shuffled sequence. Its inverse shuffles a second time instead.", variant(_decoder_input, inverse=True)),
    "mask tokens first": Mistake(
        "In the shuffled order the kept tokens come first and the hidden ones after them, so the mask tokens "
        "are appended after the kept tokens.", variant(_decoder_input, mask_first=True)),
    "zeros instead of the mask token": Mistake(
        "The hidden positions get the learned mask token, not zeros: the decoder needs a placeholder it can "
        "learn.", variant(_decoder_input, zeros=True)),
}


def _restore(B: int, N: int, seed: int) -> torch.Tensor:
    shuffle = torch.rand(B, N, generator=torch.Generator().manual_seed(seed)).argsort(dim=1)
    return shuffle.argsort(dim=1)                                          # (B, N) inverse permutation


def check_mae_decoder_input(r: Reporter) -> None:
    r.values("hand-made (B=1, N=4, K=2, D=1)", torch.tensor([[[10.0], [20.0]]]), torch.tensor([-1.0]),
             torch.tensor([[2, 0, 3, 1]]), what="decoder input")
    r.values("random (B=3, N=8, K=3, D=4)", rand(3, 3, 4, seed=110), rand(4, seed=111), _restore(3, 8, 112),
             what="decoder input")
    r.values("nothing hidden (K = N = 5)", rand(2, 5, 3, seed=113), rand(3, seed=114), _restore(2, 5, 115),
             what="decoder input")
    r.gradients("gradients reach the kept tokens and the mask token", rand(2, 2, 3, seed=116), rand(3, seed=117),
                _restore(2, 6, 118), wrt=(0, 1))
