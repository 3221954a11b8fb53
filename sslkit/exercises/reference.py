"""Reference solutions the checkers compare against (written for clarity, one idea per line).

They follow the kit's conventions, so a student solution that passes also agrees with the kit's
own functions (``sslkit.losses.nt_xent``, ``sslkit.pretext.random_masking``, ...); the tests
compare the two where the kit's maths is settled. Each function's docstring gives the shapes.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn


# ---- 01 masking ----------------------------------------------------------------------------------
class Masking(NamedTuple):
    kept: torch.Tensor         # (B, K, D) the visible tokens, in shuffled order
    mask: torch.Tensor         # (B, N) bool, True = removed
    ids_keep: torch.Tensor     # (B, K) positions of the kept tokens
    ids_restore: torch.Tensor  # (B, N) inverse permutation: unshuffles [kept, mask tokens]


def random_masking(tokens: torch.Tensor, mask_ratio: float,
                   generator: torch.Generator | None = None) -> Masking:
    """MAE random masking (He et al., 2022): hide round(ratio * N) random tokens per sample, keep K.

    tokens (B, N, D) -> kept (B, K, D), mask (B, N) bool True = removed, ids_keep (B, K),
    ids_restore (B, N), with K = N - round(mask_ratio * N).
    """
    B, N, D = tokens.shape
    keep = N - round(mask_ratio * N)  # not int(N * (1 - ratio)): 10 * (1 - 0.9) = 0.999...
    noise = torch.rand(B, N, device=tokens.device, generator=generator)  # (B, N) per sample
    ids_shuffle = noise.argsort(dim=1)                                    # low noise = kept
    ids_restore = ids_shuffle.argsort(dim=1)                              # inverse permutation
    ids_keep = ids_shuffle[:, :keep]                                      # (B, K)
    kept = tokens.gather(1, ids_keep.unsqueeze(-1).expand(-1, -1, D))     # (B, K, D)
    mask = ids_restore >= keep                                            # ranked after the first K
    return Masking(kept, mask, ids_keep, ids_restore)


def bert_mask(ids: torch.Tensor, chosen: torch.Tensor, vocab_size: int, mask_id: int,
              special_ids: Sequence[int], generator: torch.Generator | None = None
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT's 80/10/10 corruption (Devlin et al., 2019) of the chosen tokens.

    ids (B, L) int64, chosen (B, L) bool -> inputs (B, L): each chosen token independently becomes
    ``mask_id`` (80%), a random non-special word (10%) or stays (10%); targets (B, L): the original
    id where chosen, -100 (cross-entropy's ignore index) elsewhere.
    """
    u = torch.rand(ids.shape, device=ids.device, generator=generator)    # (B, L) one draw per token
    allowed = torch.ones(vocab_size, dtype=torch.bool, device=ids.device)
    allowed[list(special_ids)] = False
    words = allowed.nonzero().flatten()                                   # (W,) ordinary words
    pick = torch.randint(len(words), ids.shape, device=ids.device, generator=generator)
    inputs = torch.where(chosen & (u < 0.8), torch.full_like(ids, mask_id), ids)
    inputs = torch.where(chosen & (u >= 0.8) & (u < 0.9), words[pick], inputs)
    targets = torch.where(chosen, ids, torch.full_like(ids, -100))
    return inputs, targets


# ---- 02 contrastive ------------------------------------------------------------------------------
def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.5) -> torch.Tensor:
    """SimCLR's NT-Xent (Chen et al., 2020): z1, z2 (N, D) -> scalar, mean over the 2N anchors."""
    n = z1.shape[0]
    z = F.normalize(torch.cat([z1, z2]), dim=1)                           # (2N, D) on the sphere
    sim = z @ z.T / temperature                                           # (2N, 2N) scaled cosines
    self_mask = torch.eye(2 * n, dtype=torch.bool, device=z.device)
    sim = sim.masked_fill(self_mask, float("-inf"))                       # a view is not its own pair
    targets = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)
    return F.cross_entropy(sim, targets)


def moco_loss(q: torch.Tensor, k: torch.Tensor, queue: torch.Tensor, temperature: float = 0.2) -> torch.Tensor:
    """MoCo's InfoNCE (He et al., 2020): q, k (N, D), queue (Q, D) -> scalar.

    Each query's positive is its own key; the negatives are the queued keys of earlier batches.
    Vectors are L2-normalised first (cosine similarity).
    """
    q, k, queue = F.normalize(q, dim=1), F.normalize(k, dim=1), F.normalize(queue, dim=1)
    pos = (q * k).sum(dim=1, keepdim=True)                                # (N, 1)
    neg = q @ queue.T                                                     # (N, Q)
    logits = torch.cat([pos, neg], dim=1) / temperature                   # (N, 1 + Q)
    targets = torch.zeros(len(q), dtype=torch.long, device=q.device)      # the positive is class 0
    return F.cross_entropy(logits, targets)


def alignment(z1: torch.Tensor, z2: torch.Tensor, alpha: float = 2.0) -> torch.Tensor:
    """Wang & Isola (2020): mean distance^alpha between normalised positive pairs (lower = better)."""
    return (F.normalize(z1, dim=1) - F.normalize(z2, dim=1)).norm(dim=1).pow(alpha).mean()


def uniformity(z: torch.Tensor, t: float = 2.0) -> torch.Tensor:
    """Wang & Isola (2020): log of the mean Gaussian potential over distinct pairs (lower = better)."""
    sq_dist = torch.pdist(F.normalize(z, dim=1), p=2).pow(2)              # (N (N - 1) / 2,)
    return sq_dist.mul(-t).exp().mean().log()


# ---- 03 no negatives -----------------------------------------------------------------------------
@torch.no_grad()
def ema_update(target: nn.Module, online: nn.Module, momentum: float) -> None:
    """BYOL's target update (Grill et al., 2020): target <- m * target + (1 - m) * online, in place.

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


def vicreg_variance(z: torch.Tensor, gamma: float = 1.0, eps: float = 1e-4) -> torch.Tensor:
    """VICReg's variance term (Bardes et al., 2022, eq. 1): z (N, D) -> scalar.

    A hinge on each dimension's standard deviation over the batch (unbiased variance):
    mean_j max(0, gamma - sqrt(Var(z_j) + eps)).
    """
    std = torch.sqrt(z.var(dim=0) + eps)                                  # (D,)
    return F.relu(gamma - std).mean()


def vicreg_covariance(z: torch.Tensor) -> torch.Tensor:
    """VICReg's covariance term (Bardes et al., 2022, eq. 3-4): z (N, D) -> scalar.

    The squared off-diagonal entries of the (unbiased) covariance matrix, summed and divided by D.
    """
    n, d = z.shape
    zc = z - z.mean(dim=0)                                                # (N, D) centred
    cov = zc.T @ zc / (n - 1)                                             # (D, D)
    off = cov - torch.diag(torch.diagonal(cov))
    return off.pow(2).sum() / d


# ---- 04 reconstruction ---------------------------------------------------------------------------
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
    """MAE loss: pred, target (B, N, P*P*C), mask (B, N) bool -> scalar.

    Per-patch MSE averaged over the *masked* patches only (0 when none is masked).
    """
    if norm_pix:  # each target patch normalised by its own mean and std (MAE's best setting)
        mean = target.mean(dim=-1, keepdim=True)
        var = target.var(dim=-1, keepdim=True)
        target = (target - mean) / (var + 1e-6).sqrt()
    per_patch = (pred - target).pow(2).mean(dim=-1)                       # (B, N)
    m = mask.to(per_patch.dtype)
    return (per_patch * m).sum() / m.sum().clamp_min(1.0)                # no masked patch -> 0, not NaN


def mae_decoder_input(kept: torch.Tensor, mask_token: torch.Tensor, ids_restore: torch.Tensor) -> torch.Tensor:
    """MAE's decoder input: kept (B, K, D) encoded visible tokens, mask_token (D,), ids_restore (B, N)
    -> (B, N, D): every token back at its original position, the mask token at the hidden ones."""
    B, K, D = kept.shape
    N = ids_restore.shape[1]
    fill = mask_token.expand(B, N - K, D)                                 # (B, N - K, D)
    seq = torch.cat([kept, fill], dim=1)                                  # shuffled order
    return seq.gather(1, ids_restore.unsqueeze(-1).expand(-1, -1, D))     # original order


# ---- 05 probing ----------------------------------------------------------------------------------
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


def stratified_subset(labels: torch.Tensor, per_class: int,
                      generator: torch.Generator | None = None) -> torch.Tensor:
    """Indices of ``per_class`` random items of every class: labels (N,) int64 -> (C * per_class,) int64.

    Each class's items are drawn without replacement, every item of a class equally likely.
    """
    picks = []
    for c in labels.unique():
        members = (labels == c).nonzero().flatten()                           # (n_c,)
        order = torch.randperm(len(members), generator=generator)
        picks.append(members[order[:per_class].to(members.device)])
    return torch.cat(picks)


# ---- 06 feature explorer -------------------------------------------------------------------------
def pca(x: torch.Tensor, k: int) -> torch.Tensor:
    """Project (N, D) onto its top-k principal components -> (N, k) (signs are arbitrary)."""
    xc = x - x.mean(dim=0, keepdim=True)                                  # centre first
    _, _, vh = torch.linalg.svd(xc, full_matrices=False)                  # rows of vh: directions
    return xc @ vh[:k].T


def dino_teacher(teacher_logits: torch.Tensor, center: torch.Tensor, temperature: float = 0.04) -> torch.Tensor:
    """DINO's teacher targets (Caron et al., 2021): logits (B, K), center (K,) -> probabilities (B, K).

    Centre (subtract the running mean of teacher outputs), sharpen (a low temperature), softmax over
    the K outputs; no gradient flows into the targets.
    """
    return F.softmax((teacher_logits.detach() - center) / temperature, dim=-1)


@torch.no_grad()
def update_center(center: torch.Tensor, teacher_logits: torch.Tensor, momentum: float = 0.9) -> torch.Tensor:
    """DINO's centre update: center (K,), teacher logits (B, K) -> new centre (K,).

    An exponential moving average of the batch mean of the teacher's outputs:
    momentum * center + (1 - momentum) * mean_b teacher_logits[b]. The input is left unchanged.
    """
    return momentum * center + (1 - momentum) * teacher_logits.mean(dim=0)
