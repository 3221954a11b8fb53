"""``digits``: scikit-learn's 1,797 handwritten 8x8 digits (UCI optdigits test set), 10 classes.

The smallest real image dataset there is: it ships with scikit-learn, so it works offline, and a
whole SSL run on it takes seconds on a CPU. Pixels (0..16 in the source) are scaled to uint8
0..255; ``size`` resizes them with bilinear interpolation (e.g. 28 or 32 to feed the same
backbones as MNIST/CIFAR).

    >>> ds = sslkit.data.load("digits", size=32)    # uint8 (1437, 1, 32, 32)
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from sslkit import checks
from sslkit.data.base import Dataset
from sslkit.data.registry import register

SPLITS = ("train", "test", "all")
CLASSES = [str(d) for d in range(10)]
MAX_SIZE = 512  # larger upsampling of 8x8 pixels only wastes memory


def source_images() -> tuple[torch.Tensor, torch.Tensor]:
    """All 1,797 digits as uint8 (N, 1, 8, 8) in 0..255 and int64 labels (N,), in sklearn's order."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = torch.as_tensor(bunch.images, dtype=torch.float32)  # (N, 8, 8) in 0..16
    images = (images * (255.0 / 16.0)).round().clamp_(0, 255).to(torch.uint8).unsqueeze(1)
    return images, torch.as_tensor(bunch.target, dtype=torch.int64)


def stratified_split(labels: torch.Tensor, test_fraction: float, generator: torch.Generator
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices (train, test): each class is shuffled and its last ``test_fraction`` goes to test."""
    train, test = [], []
    for c in labels.unique().tolist():
        idx = (labels == c).nonzero().squeeze(1)
        idx = idx[torch.randperm(len(idx), generator=generator)]
        n_test = round(len(idx) * test_fraction)
        train.append(idx[: len(idx) - n_test])
        test.append(idx[len(idx) - n_test:])
    # shuffle across classes too, so a plain slice of the split is not sorted by class
    train_idx, test_idx = torch.cat(train), torch.cat(test)
    train_idx = train_idx[torch.randperm(len(train_idx), generator=generator)]
    test_idx = test_idx[torch.randperm(len(test_idx), generator=generator)]
    return train_idx, test_idx


def resize(images: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 (N, C, h, w) -> uint8 (N, C, size, size), bilinear (antialiased when shrinking)."""
    if images.shape[-1] == size and images.shape[-2] == size:
        return images
    x = images.float()
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False,
                      antialias=size < images.shape[-1])
    return x.round().clamp_(0, 255).to(torch.uint8)


@register("digits", kind="image", splits=SPLITS, embedded=True,
          description="scikit-learn handwritten digits: 1,797 grey 8x8 images, 10 classes "
                      "(option size resizes, e.g. 28 or 32)")
def build(split: str, root: str, seed: int, size: int = 8, test_fraction: float = 0.2) -> Dataset:
    """Build the ``digits`` split.

    Args:
        split: "train", "test" (a stratified ``test_fraction`` of each class, chosen by ``seed``)
            or "all" (the 1,797 digits in scikit-learn's order; ``seed`` has no effect).
        root: unused (the data ships with scikit-learn).
        size: output height = width in pixels, 1..512.
        test_fraction: share of each class in the test split, in (0, 1).
    """
    size = checks.integer("size", size, min=1, max=MAX_SIZE)
    test_fraction = checks.number("test_fraction", test_fraction, min=0, max=1,
                                  min_open=True, max_open=True)
    images, labels = source_images()
    if split != "all":
        g = torch.Generator().manual_seed(seed % 2**63)
        train_idx, test_idx = stratified_split(labels, test_fraction, g)
        idx = train_idx if split == "train" else test_idx
        images, labels = images[idx], labels[idx]
    return Dataset(name="digits", split=split, kind="image", x=resize(images, size).contiguous(),
                   labels=labels, classes=list(CLASSES),
                   meta={"source": "sklearn.datasets.load_digits (UCI optdigits)",
                         "licence": "CC BY 4.0 (UCI ML repository)", "seed": seed, "size": size,
                         "test_fraction": test_fraction})
