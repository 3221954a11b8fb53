"""Backbones: ``forward_features(x) -> (B, D)``, ``embed_dim`` (= D), ``forward = forward_features``.

    name            input                 D     extra
    convnet         images (B, C, H, W)   128   forward_map (spatial features)
    resnet18_cifar  images, <= 32 px      512   3x3 stride-1 stem, no max-pool
    resnet18        images, larger        512   ImageNet stem
    vit_tiny        images                192   forward_features(x, return_attention), forward_tokens(x, ids_keep)
    transformer     tokens (B, L) int64   128   forward_tokens (per position)
    conv1d          signals (B, C, T)     128   forward_sequence (B, T', D)
    frames          clips (B, T, C, H, W) 128   encode_frames (B, T, D)
    wave_transformer  raw audio (B, C, T) 128   latents (B, S, C), context(z, mask), forward_sequence
    spec_convnet    spectrograms (B, C, F, T) 512   convnet pooled over time only (8 frequency bands kept)

Unlike timm, where ``forward_features`` returns the unpooled tokens or feature map and
``forward_head`` pools them, here ``forward_features`` returns the pooled (B, D) vector that the
heads, probes and kNN use; the unpooled outputs have their own names (``forward_map``,
``forward_tokens``, ``forward_sequence``).

    net = sslkit.backbones.create("vit_tiny", image_size=32, in_channels=3)
    sslkit.backbones.names("image"), sslkit.backbones.input_kind("conv1d")   # -> [...], "signal"
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from sslkit import checks
from sslkit.backbones.conv1d import Conv1dEncoder
from sslkit.backbones.convnet import ConvNet
from sslkit.backbones.frames import FrameEncoder
from sslkit.backbones.resnet import ResNet18, resnet18, resnet18_cifar
from sslkit.backbones.spectrogram import SpectrogramConvNet
from sslkit.backbones.transformer import TextTransformer
from sslkit.backbones.vit import ViT
from sslkit.backbones.wave import WaveTransformer
from sslkit.data.base import KINDS
from sslkit.registry import Registry

# name -> (builder, the kind of data it encodes: also the ``input_kind`` attribute of the module it builds)
BACKBONES: Registry[tuple[Callable[..., nn.Module], str]] = Registry("sslkit.backbones")
for _name, _builder, _kind in [
    ("convnet", ConvNet, "image"),
    ("resnet18_cifar", resnet18_cifar, "image"),
    ("resnet18", resnet18, "image"),
    ("vit_tiny", ViT, "image"),
    ("transformer", TextTransformer, "text"),
    ("conv1d", Conv1dEncoder, "signal"),
    ("frames", FrameEncoder, "clip"),
    ("wave_transformer", WaveTransformer, "signal"),
    ("spec_convnet", SpectrogramConvNet, "spectrogram"),
]:
    BACKBONES.add(_name, (_builder, _kind))
del _name, _builder, _kind


def names(kind: str | None = None) -> list[str]:
    """Backbone names for :func:`create`; with ``kind`` (one of ``sslkit.data.KINDS``: "image",
    "text", "signal", "clip", "spectrogram") only those that encode that kind of data."""
    if kind is None:
        return BACKBONES.names()
    checks.choice("kind", kind, KINDS)
    return [n for n, (_, k) in BACKBONES.entries.items() if k == kind]


def input_kind(name: str) -> str:
    """The kind of data backbone ``name`` encodes: "image", "text", "signal", "clip" or "spectrogram"."""
    return BACKBONES.get(name)[1]


def create(name: str, **kw: Any) -> nn.Module:
    """Build backbone ``name`` with keyword arguments ``kw`` (see each class)."""
    builder = BACKBONES.get(name)[0]
    try:
        return builder(**kw)
    except TypeError as err:  # an unknown keyword: say which are allowed
        if "keyword" not in str(err) and "missing" not in str(err):
            raise
        import inspect
        allowed = list(inspect.signature(builder).parameters)
        raise ValueError(f"backbone {name!r}: {err}; keywords: {', '.join(allowed)}") from err


__all__ = ["create", "names", "input_kind", "ConvNet", "ResNet18", "ViT", "TextTransformer", "Conv1dEncoder",
           "FrameEncoder", "WaveTransformer", "SpectrogramConvNet"]
