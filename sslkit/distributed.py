"""Multi-process (DDP) helpers: who am I, gather with gradients, and data sharding.

Launch with ``torchrun --nproc_per_node=N -m sslkit train ...``; :func:`init_from_env` reads the
variables torchrun sets (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT). Everything here is a
no-op in a single process, so library code can call :func:`gather` unconditionally.

Batch-size convention: ``fit(batch_size=B)`` is the **global** batch. Every rank draws the same
permutation from the same seed, cuts the same global batch of B indices and keeps its contiguous
slice of B / world_size (:func:`shard`). Losses that need the whole batch (contrastive, Barlow Twins,
VICReg) call :func:`gather` on the embeddings, so N processes compute exactly the loss one process
would compute on the B samples.
"""
from __future__ import annotations

import os

import torch
import torch.distributed as dist


def is_distributed() -> bool:
    """True inside an initialised process group with more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    """This process's rank (0 when not distributed)."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def world_size() -> int:
    """Number of processes (1 when not distributed)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def is_main() -> bool:
    """True on the process that prints, plots and writes files (rank 0)."""
    return rank() == 0


class _GatherWithGrad(torch.autograd.Function):
    """all_gather along dim 0 that lets gradients flow back to every rank's slice.

    Why the backward is all_reduce(sum) and then the local slice: every rank computes the *same*
    loss L on the gathered batch Z = cat(z_0, ..., z_{W-1}), and DDP then **averages** parameter
    gradients over the W ranks. The gradient that reaches rank r's parameters must therefore be
    W * dL/dz_r so that the average equals dL/dtheta of one process. Rank r only sees its own
    copy of dL/dZ; summing the W (identical) copies with all_reduce gives W * dL/dZ, whose slice
    r is W * dL/dz_r - and DDP's division by W brings it back to the single-process gradient. The
    same sum is also right when the ranks' losses differ (each L_r depends on all z's): DDP
    optimises mean_r L_r and d(sum_r L_r)/dz_r / W is exactly its gradient.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        ctx.batch, ctx.rank = x.shape[0], dist.get_rank()
        parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, x.contiguous())
        return torch.cat(parts, dim=0)  # (W * B, ...)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous().clone()  # all_reduce works in place; never modify autograd's buffer
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        start = ctx.rank * ctx.batch
        return grad[start:start + ctx.batch]  # (B, ...)


def gather(x: torch.Tensor) -> torch.Tensor:
    """Concatenate ``x`` (B, ...) from all ranks along dim 0 -> (world_size * B, ...), in rank order.

    Gradients flow back to every rank's own slice (see :class:`_GatherWithGrad`), so a loss on the
    gathered tensor trains exactly like the single-process loss on the global batch. Every rank
    must pass the same shape (the engine draws equal shards). Returns ``x`` unchanged outside a
    process group.
    """
    if not is_distributed():
        return x
    if x.requires_grad:
        return _GatherWithGrad.apply(x)
    parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts, dim=0)


def all_reduce_sum(x: torch.Tensor) -> torch.Tensor:
    """Sum of a (detached) tensor over ranks (a new tensor); ``x`` itself outside a group."""
    if not is_distributed():
        return x
    x = x.detach().clone()
    dist.all_reduce(x, op=dist.ReduceOp.SUM)
    return x


def all_reduce_max(x: torch.Tensor) -> torch.Tensor:
    """Element-wise maximum of a (detached) tensor over ranks (a new tensor); ``x`` outside a group."""
    if not is_distributed():
        return x
    x = x.detach().clone()
    dist.all_reduce(x, op=dist.ReduceOp.MAX)
    return x


def all_reduce_mean(x: torch.Tensor) -> torch.Tensor:
    """Mean of a (detached) tensor over ranks, e.g. for logging; ``x`` itself outside a group."""
    if not is_distributed():
        return x
    x = x.detach().clone()
    dist.all_reduce(x, op=dist.ReduceOp.SUM)
    return x / dist.get_world_size()


def shard(indices: torch.Tensor) -> torch.Tensor:
    """This rank's contiguous slice of a global batch of indices (all of it when not distributed).

    Every rank draws the same permutation (same seed), so the slices are disjoint and their
    concatenation in rank order - what :func:`gather` returns - is the global batch.
    """
    w = world_size()
    if w == 1:
        return indices
    if len(indices) % w != 0:
        raise ValueError(f"a global batch of {len(indices)} indices cannot be split evenly over "
                         f"{w} processes; use a batch_size divisible by {w}")
    per = len(indices) // w
    r = rank()
    return indices[r * per:(r + 1) * per]


def init_from_env() -> torch.device | None:
    """Join the process group torchrun describes in the environment; return this rank's device.

    Uses NCCL with one GPU per process (``cuda:LOCAL_RANK``) when CUDA is available, otherwise
    gloo on the CPU. Returns None (and does nothing) when not launched by torchrun
    (WORLD_SIZE unset or 1). Safe to call twice.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return None
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
        backend = "nccl"
    else:
        device, backend = torch.device("cpu"), "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend=backend, init_method="env://")
    return device


def cleanup() -> None:
    """Leave the process group (if any)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    """Wait for every rank (no-op in one process)."""
    if is_distributed():
        dist.barrier()
