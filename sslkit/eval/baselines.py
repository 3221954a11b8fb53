"""The baselines every SSL result should be read against.

- raw pixels: the inputs themselves, flattened - what the probe does with no encoder at all;
- random init: the same architecture with fresh random weights - what the architecture alone gives
  (random ConvNets are surprisingly good feature extractors; SSL must beat that, not just pixels);
- supervised: the same architecture trained from scratch with only the labelled samples.

A fair random init has its BatchNorm statistics recalibrated (:func:`recalibrate_batchnorm`). A
freshly built BatchNorm layer holds running mean 0 and variance 1, so in eval mode it is an
identity: the random network evaluated with frozen features is then not the network SSL starts
from (which normalises every layer) but an unnormalised one whose activations drift in scale and
offset from layer to layer. A trained network, by contrast, carries statistics of its training
data. So that the SSL-vs-random comparison differs in the learned weights only, the random-init
baseline first runs the *unlabelled* training inputs through the network in train mode with a
cumulative average (``momentum=None``) - no gradient, no labels, no weight changes - and is then
evaluated in eval mode like any encoder. The uncalibrated network can score higher or lower
(measured with the default ConvNet, seed 0: digits kNN 95.3% uncalibrated vs 95.0% recalibrated,
linear 96.1% vs 90.8% - the uncalibrated linear probe equals the raw pixels' 96.1%, as if the
unnormalised random network were close to linear in the pixels; 16 px shapes kNN 38.0% vs 41.5%).
"""
from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from sslkit import checks
from sslkit.eval.features import Data, data_batch, data_size, feature_fn, model_device
from sslkit.eval.finetune import backbone_of, fine_tune

# Calibration batch: large enough that per-batch statistics are close to the data's (BatchNorm
# in train mode normalises each batch by its own statistics, so later layers see slightly
# batch-dependent inputs), small enough for a CPU.
CALIBRATION_BATCH = 256


def raw_pixels(x: torch.Tensor) -> torch.Tensor:
    """Features = the flattened input, ``(B, ...) -> (B, prod(...))`` as float."""
    return x.flatten(1).float()


@torch.no_grad()
def recalibrate_batchnorm(model: Any, data: Data, *, batch_size: int = CALIBRATION_BATCH,
                          max_batches: int | None = None, seed: int = 0) -> Any:
    """Re-estimate every BatchNorm layer's running statistics on ``data``; return ``model`` (eval mode).

    Label-free: only the inputs of ``data`` are used. The running statistics of each BatchNorm
    layer are reset, its momentum set to ``None`` (a cumulative average) and the model's feature
    function (``embed`` > ``forward_features`` > call, as :func:`sslkit.eval.extract_features`)
    runs on equal-size batches with the BatchNorm layers in train mode and every other module in
    eval mode (dropout off), under ``torch.no_grad``. Afterwards each layer's ``running_mean`` is
    the mean over the data of its input activations (the average of equal-size batch means) and
    ``running_var`` the average of the batches' unbiased variances; the momentum is restored and
    the whole model is left in eval mode. Weights are not touched.

    Args:
        model: a Method, a backbone or any ``nn.Module`` with ``embed``/``forward_features``.
        data: a ``sslkit.data.Dataset`` or an ``(x, labels)`` pair (labels are ignored).
        batch_size: samples per forward pass; batches come in a random order (seeded by ``seed``)
            and an incomplete last batch is dropped, so every batch counts the same.
        max_batches: stop after this many batches (None: one pass over the data).
        seed: seed of the batch order (a CPU generator: the same batches on every device).
    """
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be an nn.Module (a Method or a backbone); got {type(model).__name__}")
    n = data_size("data", data)
    batch_size = checks.integer("batch_size", batch_size, min=1)
    if max_batches is not None:
        max_batches = checks.integer("max_batches", max_batches, min=1)
    seed = checks.integer("seed", seed)
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return model.eval()
    if any(not m.track_running_stats for m in norms):
        raise ValueError("model has BatchNorm layers with track_running_stats=False; they have no "
                         "running statistics to recalibrate")
    fn = feature_fn(model)
    device = model_device(model, torch.device("cpu"))
    batch_size = min(batch_size, n)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    starts = range(0, n - batch_size + 1, batch_size)  # full batches only
    if max_batches is not None:
        starts = starts[:max_batches]
    momenta = [m.momentum for m in norms]
    model.eval()
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average: every batch weighs the same
        m.train()
    try:
        for start in starts:
            fn(data_batch(data, order[start:start + batch_size]).to(device))
    finally:
        for m, momentum in zip(norms, momenta):
            m.momentum = momentum
        model.eval()
    return model


def random_init(model: Any, seed: int = 0, *, data: Data | None = None,
                batch_size: int = CALIBRATION_BATCH) -> nn.Module:
    """A copy of ``model``'s backbone with every layer re-initialised (seeded; ``model`` untouched).

    Uses the backbone's own ``reset_parameters`` where it defines one (the ViT and text transformer
    re-run their initialisation, position embeddings and CLS token included), else each layer's
    (PyTorch's default init for that layer type), so the copy is what ``sslkit.backbones.create``
    would give before any training. BatchNorm running statistics are reset too.

    With ``data`` (the *unlabelled* training inputs: a Dataset or an ``(x, labels)`` pair) the
    BatchNorm statistics are then recalibrated on it by :func:`recalibrate_batchnorm` - the fair
    baseline for comparing with a trained network (see the module docstring). Always pass it when
    the copy is evaluated with frozen features; :func:`sslkit.eval.label_efficiency` does.
    """
    seed = checks.integer("seed", seed)
    backbone = copy.deepcopy(backbone_of(model))
    with torch.random.fork_rng(devices=[]):  # deterministic init, global RNG left as it was
        torch.manual_seed(seed)
        _reset(backbone)
    if data is not None:
        recalibrate_batchnorm(backbone, data, batch_size=batch_size, seed=seed)
    return backbone


def _reset(module: nn.Module) -> None:
    """Re-initialise ``module``: its own ``reset_parameters`` covers its whole subtree (a ViT's init
    differs from its layers' defaults); modules without one are reset child by child."""
    if callable(getattr(module, "reset_running_stats", None)):
        module.reset_running_stats()
    if callable(getattr(module, "reset_parameters", None)):
        module.reset_parameters()
        for m in module.modules():      # running statistics below a module that reset itself
            if m is not module and callable(getattr(m, "reset_running_stats", None)):
                m.reset_running_stats()
        return
    for child in module.children():
        _reset(child)


def supervised(model: Any, train_data: Data, test_data: Data, *, steps: int = 200, lr: float = 1e-3,
               batch_size: int = 256, seed: int = 0) -> float:
    """Accuracy of the model's architecture trained from scratch on ``train_data`` only.

    The backbone of ``model`` is re-initialised (:func:`random_init`, seeded by ``seed``) and trained
    end to end with a linear head by :func:`sslkit.eval.fine_tune`.
    """
    return fine_tune(random_init(model, seed), train_data, test_data, steps=steps, lr=lr,
                     batch_size=batch_size, seed=seed)
