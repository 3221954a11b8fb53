"""ResNet-18 backbones from torchvision (He et al. 2016), classifier removed: D = 512.

``resnet18_cifar`` is the variant SimCLR uses for 32x32 images: conv1 is 3x3 stride 1 and there is
no max-pool (the ImageNet stem would shrink a 32x32 image to 8x8 before the first block).
``resnet18`` keeps the ImageNet stem (7x7 stride 2 + max-pool) for larger images (STL-10 96x96).
"""
from __future__ import annotations

import torch
from torch import nn

from sslkit import checks


class ResNet18(nn.Module):
    """(B, C, H, W) images -> (B, 512) features.

    Args:
        in_channels: input channels (1 or 3).
        cifar_stem: 3x3 stride-1 conv1 and no max-pool (for <= 32x32 images).
        image_size: accepted for a uniform backbone signature; any size works (global pooling).
    """

    input_kind = "image"

    def __init__(self, in_channels: int = 3, cifar_stem: bool = False, image_size: int | None = None) -> None:
        super().__init__()
        from torchvision.models import resnet18  # imported here: torchvision is slow to import
        self.in_channels = checks.integer("in_channels", in_channels, min=1)
        net = resnet18(weights=None)
        if cifar_stem:
            net.conv1 = nn.Conv2d(in_channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
            net.maxpool = nn.Identity()
        elif in_channels != 3:
            net.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
        net.fc = nn.Identity()
        self.net = net
        self.embed_dim = 512

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(checks.images("x", x, channels=(self.in_channels,)))          # (B, 512)

    forward = forward_features


def resnet18_cifar(in_channels: int = 3, image_size: int | None = None) -> ResNet18:
    """ResNet-18 with the CIFAR stem (3x3 stride-1 conv1, no max-pool), D = 512."""
    return ResNet18(in_channels, cifar_stem=True, image_size=image_size)


def resnet18(in_channels: int = 3, image_size: int | None = None) -> ResNet18:
    """ResNet-18 with the ImageNet stem, D = 512."""
    return ResNet18(in_channels, cifar_stem=False, image_size=image_size)
