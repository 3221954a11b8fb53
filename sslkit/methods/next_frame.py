"""Next-frame prediction: encode the frames seen so far and draw the one that comes next.

Srivastava, Mansimov & Salakhutdinov (2015), "Unsupervised Learning of Video Representations using
LSTMs" (the Moving MNIST future predictor).

    clip (B, T, C, H, W) ─ frame encoder ─> (B, T-1, D) ─ GRU ─> (B, T-1, H)
      ─ ConvDecoder ─> predicted frames 2..T ─ MSE with the true frames 2..T

Predicting where the digits go needs both what they are and how they move. Evaluation uses the
time-averaged frame features (``embed``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from sslkit import checks, heads, pretext
from sslkit.methods.base import Method, default_backbone, make_config
from sslkit.methods.registry import register


@dataclass
class NextFrameConfig:
    # GRU state size: the summary of the past frames the decoder draws from.
    hidden_dim: int = 256
    # Decoder channels (discarded after training; 64 is plenty for 32x32 frames).
    decoder_width: int = 64
    # Frame shape when no data is given (otherwise taken from the data).
    image_size: int = 32
    in_channels: int = 1

    def __post_init__(self) -> None:
        checks.integer("hidden_dim", self.hidden_dim, min=1)
        checks.integer("decoder_width", self.decoder_width, min=1)
        checks.integer("image_size", self.image_size, min=1)
        checks.integer("in_channels", self.in_channels, min=1)


class NextFrame(Method):
    name = "next_frame"
    kinds = ("clip",)
    default_lr = 1e-3  # AdamW

    def __init__(self, backbone: nn.Module, config: NextFrameConfig, frame_shape: tuple[int, int, int]) -> None:
        if not hasattr(backbone, "encode_frames"):
            raise ValueError(f"next_frame needs a clip backbone (e.g. 'frames') with encode_frames; "
                             f"got {type(backbone).__name__}")
        super().__init__(backbone)
        self.config = config
        self.frame_shape = tuple(frame_shape)                              # (C, H, W)
        self.gru = nn.GRU(backbone.embed_dim, config.hidden_dim, batch_first=True)
        self.decoder = heads.ConvDecoder(config.hidden_dim, frame_shape[0], frame_shape[1:], config.decoder_width)
        # Start from a dark frame (sigmoid(-3) = 0.05) instead of grey 0.5: moving-digit frames are
        # mostly black, so the first steps learn where the digit is, not the background level.
        nn.init.constant_(self.decoder.up[-1].bias, -3.0)

    def _check(self, clips: Any, name: str, min_frames: int) -> torch.Tensor:
        checks.tensor(name, clips, ndim=5, dtypes="float")
        if tuple(clips.shape[2:]) != self.frame_shape or clips.shape[1] < min_frames:
            raise ValueError(f"{name} has shape {tuple(clips.shape)}; next_frame needs clips "
                             f"(B, T >= {min_frames}, {', '.join(map(str, self.frame_shape))})")
        return clips

    def _predict(self, context: torch.Tensor) -> torch.Tensor:
        """context (B, T, C, H, W) -> prediction of the frame after each step (B, T, C, H, W)."""
        h, _ = self.gru(self.backbone.encode_frames(context))              # (B, T, H)
        frames = self.decoder(h.flatten(0, 1))                             # (B*T, C, H, W)
        return frames.reshape(*context.shape)

    def training_step(self, batch: torch.Tensor) -> dict[str, torch.Tensor]:
        clips = self._check(batch, "batch", 2)                             # (B, T, C, H, W)
        if clips.shape[0] < 2:
            raise ValueError(f"batch needs at least 2 clips (BatchNorm); got shape {tuple(clips.shape)}")
        context, target = pretext.next_step(clips, horizon=1)              # (B, T-1, ...) each
        pred = self._predict(context)
        loss = F.mse_loss(pred, target)
        with torch.no_grad():  # baseline: "the next frame equals the current one"
            copy = F.mse_loss(context, target)
        return {"loss": loss, "copy_last_mse": copy}

    @torch.no_grad()
    def predict_next(self, clips: torch.Tensor) -> torch.Tensor:
        """For notebooks: the predicted frame after the last one of each clip, (B, C, H, W)."""
        clips = self._check(clips, "clips", 1)
        return self._predict(clips)[:, -1]


@register(NextFrame, "Next-frame prediction: draw the next frame of a clip from the past frames")
def next_frame(data: Any = None, backbone: Any = None, **config: Any) -> NextFrame:
    """Future-frame prediction (Srivastava et al. 2015). ``config``: see :class:`NextFrameConfig`."""
    cfg = make_config(NextFrameConfig, config)
    net = default_backbone(data, backbone, kind=NextFrame.kinds[0])
    shape = tuple(data.sample_shape[1:]) if data is not None else \
        (getattr(net, "in_channels", cfg.in_channels), cfg.image_size, cfg.image_size)
    return NextFrame(net, cfg, shape)
