"""Reference solutions the checkers compare against (written for clarity, one idea per line).

They follow the kit's conventions so a student solution that passes also equals the kit's own
functions (``sslkit.losses.nt_xent``, ``sslkit.pretext.random_masking``, ...).
"""
from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn


class Masking(NamedTuple):
    kept: torch.Tensor         # (B, K, D) the visible tokens, in shuffled order
    mask: torch.Tensor         # (B, N) bool, True = removed
    ids_keep: torch.Tensor     # (B, K) positions of the kept tokens
    ids_restore: torch.Tensor  # (B, N) inverse permutation: unshuffles [kept, mask tokens]


def random_masking(tokens: torch.Tensor, mask_ratio: float,
                   generator: torch.Generator | None = None) -> Masking:
    """MAE random masking (He et al., 2022): hide round(ratio * N) random tokens per sample, keep K."""
    B, N, D = tokens.shape
    keep = N - round(mask_ratio * N)  # not int(N * (1 - ratio)): 10 * (1 - 0.9) = 0.999...
    noise = torch.rand(B, N, device=tokens.device, generator=generator)  # (B, N) per sample
    ids_shuffle = noise.argsort(dim=1)                                    # low noise = kept
    ids_restore = ids_shuffle.argsort(dim=1)                              # inverse permutation
    ids_keep = ids_shuffle[:, :keep]                                      # (B, K)
    kept = tokens.gather(1, ids_keep.unsqueeze(-1).expand(-1, -1, D))     # (B, K, D)
    mask = torch.ones(B, N, dtype=torch.bool, device=tokens.device)
    mask[:, :keep] = False                                                # in shuffled order ...
    mask = mask.gather(1, ids_restore)                                    # ... back to positions
    return Masking(kept, mask, ids_keep, ids_restore)


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.5) -> torch.Tensor:
    """SimCLR's NT-Xent (Chen et al., 2020): 2N-way classification of each view's partner."""
    n = z1.shape[0]
    z = F.normalize(torch.cat([z1, z2]), dim=1)                           # (2N, D) on the sphere
    sim = z @ z.T / temperature                                           # (2N, 2N) scaled cosines
    self_mask = torch.eye(2 * n, dtype=torch.bool, device=z.device)
    sim = sim.masked_fill(self_mask, float("-inf"))                       # a view is not its own pair
    targets = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)
    return F.cross_entropy(sim, targets)


@torch.no_grad()
def ema_update(target: nn.Module, online: nn.Module, momentum: float) -> None:
    """BYOL's target update (Grill et al., 2020): target <- m * target + (1 - m) * online.

    Float buffers (BatchNorm's running mean and variance) are averaged the same way and integer
    buffers (``num_batches_tracked``) copied, as ``sslkit.methods.base.ema_update`` does.
    """
    for p_t, p_o in zip(target.parameters(), online.parameters()):
        p_t.mul_(momentum).add_(p_o, alpha=1 - momentum)
    for b_t, b_o in zip(target.buffers(), online.buffers()):
        if b_t.is_floating_point():
            b_t.mul_(momentum).add_(b_o, alpha=1 - momentum)
        else:
            b_t.copy_(b_o)


def patchify(x: torch.Tensor, patch_size: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, N, P*P*C), patches in row-major order, pixels (row, col, channel)."""
    B, C, H, W = x.shape
    p = patch_size
    h, w = H // p, W // p
    x = x.reshape(B, C, h, p, w, p)
    x = x.permute(0, 2, 4, 3, 5, 1)                                       # (B, h, w, p, p, C)
    return x.reshape(B, h * w, p * p * C)


def masked_mse(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor,
               norm_pix: bool = False) -> torch.Tensor:
    """MAE loss: per-patch MSE averaged over the *masked* patches only (0 when none is masked)."""
    if norm_pix:  # each target patch normalised by its own mean and std (MAE's best setting)
        mean = target.mean(dim=-1, keepdim=True)
        var = target.var(dim=-1, keepdim=True)
        target = (target - mean) / (var + 1e-6).sqrt()
    per_patch = (pred - target).pow(2).mean(dim=-1)                       # (B, N)
    m = mask.to(per_patch.dtype)
    return (per_patch * m).sum() / m.sum().clamp_min(1.0)                # no masked patch -> 0, not NaN


def knn_predict(train_feats: torch.Tensor, train_labels: torch.Tensor, test_feats: torch.Tensor,
                num_classes: int, k: int = 20, temperature: float = 0.07) -> torch.Tensor:
    """Weighted kNN (Wu et al., 2018): the k most cosine-similar training items vote with exp(sim / T).

    Same signature as ``sslkit.eval.knn.knn_predict``; returns the predicted class (M,) of each test item.
    If ``k`` exceeds the N training items, all N vote (k is clipped to N, as the kit does).
    """
    k = min(k, train_feats.shape[0])
    sim = F.normalize(test_feats, dim=1) @ F.normalize(train_feats, dim=1).T  # (M, N) cosine
    top_sim, top_idx = sim.topk(k, dim=1)                                     # (M, k)
    weights = (top_sim / temperature).exp()                                   # (M, k)
    votes = torch.zeros(test_feats.shape[0], num_classes, dtype=weights.dtype, device=test_feats.device)
    votes.scatter_add_(1, train_labels[top_idx], weights)                     # (M, C)
    return votes.argmax(dim=1)


def alignment(z1: torch.Tensor, z2: torch.Tensor, alpha: float = 2.0) -> torch.Tensor:
    """Wang & Isola (2020): mean distance^alpha between normalised positive pairs (lower = better)."""
    return (F.normalize(z1, dim=1) - F.normalize(z2, dim=1)).norm(dim=1).pow(alpha).mean()


def uniformity(z: torch.Tensor, t: float = 2.0) -> torch.Tensor:
    """Wang & Isola (2020): log of the mean Gaussian potential over distinct pairs (lower = better)."""
    sq_dist = torch.pdist(F.normalize(z, dim=1), p=2).pow(2)              # (N (N - 1) / 2,)
    return sq_dist.mul(-t).exp().mean().log()


def pca(x: torch.Tensor, k: int) -> torch.Tensor:
    """Project (N, D) onto its top-k principal components -> (N, k) (signs are arbitrary)."""
    xc = x - x.mean(dim=0, keepdim=True)                                  # centre first
    _, _, vh = torch.linalg.svd(xc, full_matrices=False)                  # rows of vh: directions
    return xc @ vh[:k].T
