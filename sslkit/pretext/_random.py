"""Per-sample random draws shared by the pretext ops.

Every op draws its parameters as tensors of shape ``(B, ...)`` directly on the data's device, so
one call gives every sample of the batch its own crop / jitter / mask, and a seeded
``torch.Generator`` on that device makes the whole thing reproducible.
"""
from __future__ import annotations

import math

import torch


def check_generator(generator: torch.Generator | None, device: torch.device,
                    name: str = "generator") -> torch.Generator | None:
    """``generator`` must be None or a ``torch.Generator`` on ``device``.

    Meta tensors (shape propagation only) accept any generator: nothing is actually drawn.
    """
    if generator is None:
        return None
    if not isinstance(generator, torch.Generator):
        raise ValueError(f"{name} must be a torch.Generator or None ({type(generator).__name__} given)")
    device = torch.device(device)
    if device.type == "meta":
        return generator
    gdev = generator.device
    same = gdev.type == device.type and (gdev.type == "cpu" or device.index is None or gdev.index is None
                                         or gdev.index == device.index)
    if not same:
        raise ValueError(f"{name} is on device {str(gdev)!r} but the data is on {str(device)!r}; "
                         f"allowed: a generator on the data's device, "
                         f"e.g. torch.Generator(device={str(device)!r})")
    return generator


def uniform(shape: int | tuple[int, ...], lo: float, hi: float, generator: torch.Generator | None,
            device: torch.device, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Uniform draws in [lo, hi) of ``shape`` (an int means ``(shape,)``)."""
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    u = torch.rand(shape, generator=generator, device=device, dtype=dtype)
    return u * (hi - lo) + lo


def log_uniform(shape: int | tuple[int, ...], lo: float, hi: float, generator: torch.Generator | None,
                device: torch.device) -> torch.Tensor:
    """Draws whose log is uniform in [log lo, log hi) (used for aspect ratios)."""
    return torch.exp(uniform(shape, math.log(lo), math.log(hi), generator, device))


def bernoulli(shape: int | tuple[int, ...], p: float, generator: torch.Generator | None,
              device: torch.device) -> torch.Tensor:
    """Bool tensor, True with probability ``p`` independently per entry ("apply this op?")."""
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    if p >= 1.0:
        return torch.ones(shape, dtype=torch.bool, device=device)
    if p <= 0.0:
        return torch.zeros(shape, dtype=torch.bool, device=device)
    return torch.rand(shape, generator=generator, device=device) < p


def randint_below(high: torch.Tensor | int, shape: tuple[int, ...], generator: torch.Generator | None,
                  device: torch.device) -> torch.Tensor:
    """Integers uniform in ``[0, high)`` where ``high`` may differ per entry (broadcast tensor).

    ``torch.randint`` only takes a scalar bound, so draw u in [0, 1) and floor ``u * high``.
    float32 (MPS has no float64): ``u * high`` can round up to ``high`` itself, so the result is
    clamped to ``high - 1``. u has 2^24 levels, so each value's probability is off by at most about
    ``high / 2^24`` of itself (< 0.001% for image sides, 0.2% for a 30k-token vocabulary).
    ``high`` may be a tensor on ``device`` (no host sync).
    """
    u = torch.rand(shape, generator=generator, device=device, dtype=torch.float32)
    if not isinstance(high, torch.Tensor):  # a Python int: no tensor made from host data (no copy)
        return (u * high).long().clamp_(0, max(int(high) - 1, 0))
    high = high.to(device)
    return torch.minimum((u * high).long(), (high - 1).clamp(min=0).long())


def exact_choice(scores_valid: torch.Tensor, count: torch.Tensor, generator: torch.Generator | None
                 ) -> torch.Tensor:
    """Choose exactly ``count[b]`` random entries per row among the valid ones.

    Args:
        scores_valid: bool (B, N), True where an entry may be chosen.
        count: long (B,), how many to choose per row (at most the number of valid entries).
    Returns:
        bool (B, N), True at the chosen entries.

    Random scores in [0, 1) for valid entries and 2 for invalid ones; the ``count`` smallest
    scores of each row win (the rank of an entry is found with a double argsort).
    """
    B, N = scores_valid.shape
    noise = torch.rand((B, N), generator=generator, device=scores_valid.device)
    noise = torch.where(scores_valid, noise, torch.full_like(noise, 2.0))
    rank = noise.argsort(dim=1).argsort(dim=1)  # (B, N) 0 = smallest score
    return (rank < count[:, None]) & scores_valid
