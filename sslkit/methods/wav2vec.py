"""wav2vec 2.0 (without the quantiser): mask spans of latent speech frames, then pick each masked
frame's true latent among distractors from the other masked frames of the same clip.

Baevski, Zhou, Mohamed & Auli (2020), "wav2vec 2.0: A Framework for Self-Supervised Learning of
Speech Representations", https://arxiv.org/abs/2006.11477.

    wave (B, 1, T) ─ conv feature encoder ─> z (B, S, C) ─────────────── target_proj ─> targets (B, S, P)
                                              └ mask spans ─ Transformer ─> c ─ pred_proj ─> pred (B, S, P)
    loss = at masked t: -log softmax_j cos(pred_t, target_j) / 0.1 over j in {t} + K distractors

The targets are the latents of the unmasked wave. The paper quantises them (a codebook picked with
Gumbel softmax, plus a diversity loss); its table 4 also trains with continuous targets, which is
what this file does: same masking, same contrastive task, no codebook. Evaluation: ``embed`` is the
Transformer's output averaged over time, with nothing masked (the backbone's ``forward_features``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from sslkit import checks, losses
from sslkit.methods.base import Method, default_backbone, make_config
from sslkit.methods.registry import register
from sslkit.pretext import audio


@dataclass
class Wav2VecConfig:
    # Share of frames that start a masked span, and the span length, as the paper (p = 0.065,
    # M = 10): about half the frames are masked. Our frames are 10 ms, so a span is 100 ms - a
    # phoneme or two of a 0.5 s word (the paper's 200 ms spans sit in utterances of ~15 s).
    mask_prob: float = 0.065
    mask_span: int = 10
    # At least this many spans per clip (the official code's min_masks = 2): a 50-frame clip draws
    # only 3.3 on average, and every clip needs other masked frames to serve as distractors.
    min_spans: int = 2
    # Distractors per masked frame. Paper: K = 100 out of the ~370 masked frames of an utterance; a
    # 0.5 s clip has ~25 masked frames, so 20 (drawn with replacement, as the official code).
    num_distractors: int = 20
    # Temperature kappa of the cosine logits (paper: 0.1).
    temperature: float = 0.1
    # Size of the space the loss compares in (paper: 256 for BASE with 768-wide features).
    proj_dim: int = 128

    def __post_init__(self) -> None:
        checks.number("mask_prob", self.mask_prob, min=0.0, max=1.0)
        checks.integer("mask_span", self.mask_span, min=1)
        checks.integer("min_spans", self.min_spans, min=1)
        checks.integer("num_distractors", self.num_distractors, min=1)
        checks.number("temperature", self.temperature, min=0.0, min_open=True)
        checks.integer("proj_dim", self.proj_dim, min=1)


class Wav2Vec(Method):
    name = "wav2vec"
    kinds = ("signal",)
    # AdamW lr per 256 clips (fit scales it by batch_size / 256): 4e-3 gives the paper's peak lr 5e-4
    # at batch 32. Measured on spoken_digits (batch 32, 1 thread): loss 3.44 -> 2.19 in 300 steps,
    # against 2.23 after 500 steps at 1e-3 per 256 (1.25e-4).
    default_lr = 4e-3

    def __init__(self, backbone: nn.Module, config: Wav2VecConfig) -> None:
        for attr in ("latents", "context"):
            if not callable(getattr(backbone, attr, None)):
                raise ValueError(f"wav2vec needs a backbone with latents(x) and context(z, mask) (e.g. "
                                 f"'wave_transformer'); got {type(backbone).__name__}")
        super().__init__(backbone)
        self.config = config
        self.pred_proj = nn.Linear(backbone.embed_dim, config.proj_dim)       # the paper's final_proj
        self.target_proj = nn.Linear(backbone.latent_dim, config.proj_dim)    # the paper's project_q

    def mask(self, batch_size: int, frames: int, device: torch.device) -> torch.Tensor:
        """The span mask (B, S) bool of one training step (global RNG, as the other methods)."""
        cfg = self.config
        if frames < cfg.mask_span or frames - cfg.mask_span + 1 < cfg.min_spans:
            raise ValueError(f"waves of {frames} latent frames are too short for mask_span={cfg.mask_span} "
                             f"with min_spans={cfg.min_spans}; use longer waves or a shorter mask_span")
        return audio.mask_spans(batch_size, frames, cfg.mask_prob, cfg.mask_span, cfg.min_spans, device)

    def training_step(self, batch: torch.Tensor) -> dict[str, torch.Tensor]:
        checks.tensor("batch", batch, ndim=3, dtypes="float")                # (B, C, T)
        z = self.backbone.latents(batch)                                       # (B, S, C)
        b, s, _ = z.shape
        mask = self.mask(b, s, z.device)                                       # (B, S)
        c = self.backbone.context(z, mask)                                     # (B, S, D)
        pred, targets = self.pred_proj(c), self.target_proj(z)                 # (B, S, P) each
        distractors = audio.sample_distractors(mask, self.config.num_distractors)   # (B, S, K)
        out = losses.masked_contrastive_terms(pred, targets, mask, distractors, self.config.temperature)
        with torch.no_grad():
            out["masked"] = mask.float().mean()
            # collapse monitor: spread of the targets (0 if every frame had the same latent)
            out["target_std"] = nn.functional.normalize(targets.flatten(0, 1).float(), dim=1).std(0).mean()
        return out


@register(Wav2Vec, "wav2vec 2.0 (no quantiser): identify masked latent frames of speech among distractors")
def wav2vec(data: Any = None, backbone: Any = None, **config: Any) -> Wav2Vec:
    """wav2vec 2.0-style masked prediction (Baevski et al. 2020) on waves (B, C, T).
    ``config``: see :class:`Wav2VecConfig`; the default backbone is ``wave_transformer``."""
    cfg = make_config(Wav2VecConfig, config)
    return Wav2Vec(default_backbone(data, "wave_transformer" if backbone is None else backbone,
                                    kind=Wav2Vec.kinds[0]), cfg)
