"""CPC: summarise the past of a signal and pick its true future among negatives (InfoNCE).

van den Oord, Li & Vinyals (2018), "Representation Learning with Contrastive Predictive Coding",
https://arxiv.org/abs/1807.03748.

    x (B, C, T) ─ conv1d encoder ─> z (B, S, D) ─ GRU ─> context c (B, S, H)
    for k = 1..K:  pred_k = W_k c_t  must match z_{t+k}  against the other (sample, time) targets

The other targets in a random subset of (sample, time) positions are the negatives, so the future
must be told apart both from other signals and from other times of the same signal.
Evaluation uses the encoder's time-averaged features (``embed``).

No peeking at the future. The encoder (``conv1d``) cuts the signal into non-overlapping windows of
w = 4 samples with a per-step norm, and the GRU is causal, so (``receptive_fields``):

    z_t      reads samples [w t, w (t + 1))            (the encoder's receptive field: w samples)
    c_t      reads samples [0, w (t + 1))              (everything up to the end of step t)
    z_{t+k}  reads samples [w (t + k), w (t + k + 1))  -> a gap of w (k - 1) samples after c_t's last

Changing any sample from w (t + 1) on leaves c_t bit-identical, and no target shares a sample with
its context. (An encoder with overlapping windows, or one normalised over time, would let c_t read
part of z_{t+1}'s samples and the task would be solved by copying; ``create`` refuses backbones
whose windows overlap.)
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from sslkit import checks, losses
from sslkit.methods.base import Method, default_backbone, make_config
from sslkit.methods.registry import register


@dataclass
class CPCConfig:
    # GRU context size. Paper: 256 for audio; our encoder has 128 features.
    context_dim: int = 128
    # How many steps ahead to predict. Paper: 12 steps of 10 ms audio; a 128-sample wave gives 32
    # encoder steps, so 4 steps ahead (an eighth of the sequence) is a non-trivial forecast.
    prediction_steps: int = 4
    # Queries per step size k: a random subset of the B * (S - k) (sample, time) positions; the
    # other 255 targets are each query's negatives (keeps the logits matrix at 256 x 256).
    num_queries: int = 256
    # InfoNCE temperature on cosine similarities (the paper used raw dot products; normalising
    # with tau = 0.1 trains more stably on small data).
    temperature: float = 0.1

    def __post_init__(self) -> None:
        checks.integer("context_dim", self.context_dim, min=1)
        checks.integer("prediction_steps", self.prediction_steps, min=1)
        checks.integer("num_queries", self.num_queries, min=2)
        checks.number("temperature", self.temperature, min=0.0, min_open=True)


class CPC(Method):
    name = "cpc"
    kinds = ("signal",)
    # AdamW lr per 256 signals (fit scales it by batch_size / 256). Paper: Adam 2e-4. Measured on
    # waves (kNN accuracy of embed; untrained encoder 0.882): batch 64, 150 steps: lr 2.5e-4 -> 0.898,
    # 1e-3 -> 0.910, 2e-3 -> 0.908; batch 256, 100 steps: 2e-3 and 4e-3 -> 0.908.
    default_lr = 2e-3

    def __init__(self, backbone: nn.Module, config: CPCConfig) -> None:
        for attr in ("forward_sequence", "step_windows"):
            if not callable(getattr(backbone, attr, None)):
                raise ValueError(f"cpc needs a sequence backbone (e.g. 'conv1d') with {attr}; "
                                 f"got {type(backbone).__name__}")
        windows = backbone.step_windows(1024)       # any length: the encoder's windows repeat
        if any(a[1] > b[0] for a, b in zip(windows, windows[1:])):
            raise ValueError(f"cpc needs an encoder whose steps read non-overlapping windows (so that "
                             f"c_t and the targets z_(t+k) share no sample); {type(backbone).__name__} "
                             f"steps read {windows[:3]}...")
        super().__init__(backbone)
        self.config = config
        d, h = backbone.embed_dim, config.context_dim
        self.gru = nn.GRU(d, h, batch_first=True)              # autoregressive: c_t sees z_1..z_t
        self.predictors = nn.ModuleList(nn.Linear(h, d) for _ in range(config.prediction_steps))  # W_k

    def context(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(z, c)``: encoder steps (B, S, D) and causal summaries c_t = GRU(z_1..z_t) (B, S, H)."""
        checks.tensor("x", x, ndim=3, dtypes="float")                     # (B, C, T)
        z = self.backbone.forward_sequence(x)                              # (B, S, D)
        c, _ = self.gru(z)                                                 # (B, S, H)
        return z, c

    def training_step(self, batch: torch.Tensor) -> dict[str, torch.Tensor]:
        checks.tensor("batch", batch, ndim=3, dtypes="float")             # (B, C, T)
        z, c = self.context(batch)                                         # (B, S, D), (B, S, H)
        b, s, d = z.shape
        k_max = self.config.prediction_steps
        if s <= k_max or b * (s - k_max) < 2:
            raise ValueError(f"batch of shape {tuple(batch.shape)} gives {s} encoder steps; cpc with "
                             f"prediction_steps={k_max} needs more steps (longer signals) or a larger batch")
        out: dict[str, torch.Tensor] = {}
        total = z.new_zeros(())
        for k in range(1, k_max + 1):
            pred = self.predictors[k - 1](c[:, :-k]).reshape(-1, d)        # (B*(S-k), D): W_k c_t
            target = z[:, k:].reshape(-1, d)                               # (B*(S-k), D): z_{t+k}
            n = min(self.config.num_queries, pred.shape[0])
            idx = torch.randperm(pred.shape[0], device=z.device)[:n]
            loss_k = losses.info_nce(pred[idx], target[idx], temperature=self.config.temperature)
            total = total + loss_k
            if k in (1, k_max):
                out[f"loss_k{k}"] = loss_k.detach()
        out["loss"] = total / k_max
        return out

    def receptive_fields(self, t: int, length: int) -> dict[str, Any]:
        """Samples ``[start, stop)`` read by c_t and by each target z_(t+k), for signals of ``length``.

        ``{"context": (0, stop), "targets": {k: (start, stop) for k = 1..K}}``; a target past the end
        of the signal is left out. For the notebook's figure of what the context may see.
        """
        windows = self.backbone.step_windows(length)
        t = checks.integer("t", t, min=0, max=len(windows) - 1)
        targets = {k: windows[t + k] for k in range(1, self.config.prediction_steps + 1)
                   if t + k < len(windows)}
        return {"context": (0, windows[t][1]), "targets": targets}


@register(CPC, "Contrastive Predictive Coding: predict future encoder steps of a signal with InfoNCE")
def cpc(data: Any = None, backbone: Any = None, **config: Any) -> CPC:
    """CPC (van den Oord et al. 2018) on signals (B, C, T). ``config``: see :class:`CPCConfig`."""
    cfg = make_config(CPCConfig, config)
    return CPC(default_backbone(data, backbone, kind=CPC.kinds[0]), cfg)
