"""The baselines every SSL result should be read against.

- raw pixels: the inputs themselves, flattened - what the probe does with no encoder at all;
- random init: the same architecture with fresh random weights - what the architecture alone gives
  (random ConvNets are surprisingly good feature extractors; SSL must beat that, not just pixels);
- supervised: the same architecture trained from scratch with only the labelled samples.
"""
from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from sslkit import checks
from sslkit.eval.features import Data
from sslkit.eval.finetune import backbone_of, fine_tune


def raw_pixels(x: torch.Tensor) -> torch.Tensor:
    """Features = the flattened input, ``(B, ...) -> (B, prod(...))`` as float."""
    return x.flatten(1).float()


def random_init(model: Any, seed: int = 0) -> nn.Module:
    """A copy of ``model``'s backbone with every layer re-initialised (seeded; ``model`` untouched).

    Uses each submodule's own ``reset_parameters`` (PyTorch's default init for that layer type), so
    the copy is what ``sslkit.backbones.create`` would give before any training. BatchNorm running
    statistics are reset too.
    """
    seed = checks.integer("seed", seed)
    backbone = copy.deepcopy(backbone_of(model))
    with torch.random.fork_rng(devices=[]):  # deterministic init, global RNG left as it was
        torch.manual_seed(seed)
        for m in backbone.modules():
            for fn in ("reset_parameters", "reset_running_stats"):
                if callable(getattr(m, fn, None)):
                    getattr(m, fn)()
    return backbone


def supervised(model: Any, train_data: Data, test_data: Data, *, steps: int = 200, lr: float = 1e-3,
               batch_size: int = 256, seed: int = 0) -> float:
    """Accuracy of the model's architecture trained from scratch on ``train_data`` only.

    The backbone of ``model`` is re-initialised (:func:`random_init`, seeded by ``seed``) and trained
    end to end with a linear head by :func:`sslkit.eval.fine_tune`.
    """
    return fine_tune(random_init(model, seed), train_data, test_data, steps=steps, lr=lr,
                     batch_size=batch_size, seed=seed)
