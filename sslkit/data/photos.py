"""``photos``: scikit-learn's two sample photographs (china.jpg, flower.jpg), optionally as crops.

Two real 427x640 colour photos that ship with scikit-learn, so they work offline. Use them whole to
show what augmentations do to a natural image, or as a small dataset of random crops
(``crops=512, crop_size=64``) whose label is the photo the crop came from.

    >>> sslkit.data.load("photos").images.shape                  # (2, 3, 427, 640)
    >>> sslkit.data.load("photos", size=224).images.shape        # (2, 3, 224, 336) shorter side 224
    >>> sslkit.data.load("photos", crops=256, crop_size=64)      # (256, 3, 64, 64), labels 0/1
"""
from __future__ import annotations

import os

import torch
import torch.nn.functional as F

from sslkit import checks
from sslkit.data.base import Dataset
from sslkit.data.registry import register


def _resize_shorter(images: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 (N, C, H, W) -> uint8 with the shorter side ``size``, aspect ratio kept (bilinear)."""
    h, w = images.shape[-2:]
    scale = size / min(h, w)
    out = (max(1, round(h * scale)), max(1, round(w * scale)))
    x = F.interpolate(images.float(), size=out, mode="bilinear", align_corners=False,
                      antialias=scale < 1)
    return x.round().clamp_(0, 255).to(torch.uint8)


@register("photos", kind="image", splits=("train",), embedded=True,
          description="scikit-learn's 2 sample photos (china, flower), 427x640 RGB; options size "
                      "(shorter side) and crops/crop_size for a small dataset of random crops")
def build(split: str, root: str, seed: int, size: int | None = None, crops: int | None = None,
          crop_size: int = 64) -> Dataset:
    """Load the photos (label = photo index, classes = file names).

    Args:
        split: "train" (the only split).
        root: unused (the files ship with scikit-learn).
        size: resize so the shorter side is ``size`` pixels (8..2048), keeping the aspect ratio;
            None keeps the original 427x640.
        crops: if given, return this many random ``crop_size`` crops (uniform photo, uniform
            position, drawn from ``seed``) instead of the whole photos.
        crop_size: side of the square crops; at most the (resized) shorter side.
    """
    from sklearn.datasets import load_sample_images

    if size is not None:
        size = checks.integer("size", size, min=8, max=2048)
    bunch = load_sample_images()
    images = torch.stack([torch.tensor(im).permute(2, 0, 1) for im in bunch.images])  # (2, 3, H, W)
    if size is not None:
        images = _resize_shorter(images, size)
    classes = [os.path.splitext(os.path.basename(f))[0] for f in bunch.filenames]
    labels = torch.arange(len(images))
    meta = {"source": "sklearn.datasets.load_sample_images", "files": list(bunch.filenames),
            "licence": "CC BY 2.0 (china.jpg: Flickr user danielbuechele; flower.jpg: Flickr "
                       "user vultilion; see sklearn/datasets/images/README.txt)", "seed": seed, "size": size}
    factors: dict[str, torch.Tensor] = {}
    if crops is not None:
        crops = checks.integer("crops", crops, min=1, max=1_000_000)
        h, w = images.shape[-2:]
        crop_size = checks.integer("crop_size", crop_size, min=1, max=min(h, w))
        g = torch.Generator().manual_seed(seed % 2**63)
        labels = torch.randint(len(images), (crops,), generator=g)
        top = torch.randint(h - crop_size + 1, (crops,), generator=g)
        left = torch.randint(w - crop_size + 1, (crops,), generator=g)
        # gather every crop at once by index arithmetic: rows (n, s, 1), cols (n, 1, s)
        r = top[:, None, None] + torch.arange(crop_size).view(1, -1, 1)
        c = left[:, None, None] + torch.arange(crop_size).view(1, 1, -1)
        hwc = images.permute(0, 2, 3, 1)  # (P, H, W, 3)
        images = hwc[labels[:, None, None], r, c].permute(0, 3, 1, 2)  # (n, 3, s, s)
        factors = {"top": top, "left": left}
        meta.update(crops=crops, crop_size=crop_size)
    return Dataset(name="photos", split=split, kind="image", x=images.contiguous(), labels=labels,
                   classes=classes, factors=factors, meta=meta)
