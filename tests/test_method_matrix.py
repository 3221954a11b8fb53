"""Every image method x every image backbone x image sizes 8..96: one training step runs (finite loss,
gradients reach the backbone), or ``create`` refuses the combination with a ValueError naming it.

The backbones are built by name from the data, as a user gets them (``create(m, data, backbone=b)``),
so the ViT's patch size, DINO's crop sizes and the jigsaw tiles are the defaults for each size.
Batches of 2 images keep a step cheap; the ResNet-18 with the CIFAR stem at 64 and 96 px costs 1-4 s
of CPU per step, so those 22 cases are marked ``slow`` (``-m "not slow"`` leaves them out, visibly).
"""

import pytest
import torch

import sslkit
from sslkit import backbones
from sslkit.data.base import Dataset
from sslkit.methods import registry

SIZES = (8, 16, 32, 64, 96)
METHODS = [m for m in registry.names() if "image" in registry.kinds(m)]
BACKBONES = backbones.names("image")
# The combinations that cannot work, and the words the error must contain (method, backbone, why).
REFUSED = {("mae", b): ("mae", b, "ViT") for b in BACKBONES if b != "vit_tiny"}
# Settings for a batch of 2: MoCo's default split-BN (8 groups of >= 2 keys) needs batches of 16; its
# batch check is tested with MoCo itself.
CONFIG = {"moco": {"key_bn_splits": 1}}


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Small steps gain nothing from a second thread, and on a busy 2-core machine two OpenMP threads
    made this file ~4x slower per CPU-second (measured); run on one and restore the setting."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def images(size: int) -> Dataset:
    """4 random images of ``size`` px: grey at 8 px (as digits), RGB otherwise."""
    g = torch.Generator().manual_seed(size)
    channels = 1 if size == 8 else 3
    x = torch.randint(0, 256, (4, channels, size, size), dtype=torch.uint8, generator=g)
    return Dataset(name=f"noise{size}", split="train", kind="image", x=x,
                   labels=torch.zeros(4, dtype=torch.long), classes=["noise"])


def cases() -> list:
    out = []
    for method in METHODS:
        for backbone in BACKBONES:
            for size in SIZES:
                heavy = backbone == "resnet18_cifar" and size >= 64
                out.append(pytest.param(method, backbone, size, id=f"{method}-{backbone}-{size}px",
                                        marks=[pytest.mark.slow] if heavy else []))
    return out


def test_matrix_covers_every_image_method_and_backbone():
    assert set(METHODS) == {"simclr", "moco", "byol", "simsiam", "barlow_twins", "vicreg", "dino", "mae",
                            "autoencoder", "rotation", "jigsaw", "swav"}
    assert BACKBONES == ["convnet", "resnet18_cifar", "resnet18", "vit_tiny"]
    assert len(cases()) == len(METHODS) * len(BACKBONES) * len(SIZES)


@pytest.mark.parametrize("method,backbone,size", cases())
def test_step_runs_or_create_refuses(method, backbone, size):
    data = images(size)
    if (method, backbone) in REFUSED:
        with pytest.raises(ValueError) as err:
            sslkit.create(method, data=data, backbone=backbone)
        for word in REFUSED[method, backbone]:
            assert word in str(err.value), (word, str(err.value))
        return
    torch.manual_seed(0)
    model = sslkit.create(method, data=data, backbone=backbone, **CONFIG.get(method, {}))
    out = model.training_step(data.batch(torch.arange(2)))
    assert out["loss"].shape == () and torch.isfinite(out["loss"]), out
    out["loss"].backward()
    grads = [p.grad for p in model.backbone.parameters() if p.requires_grad]
    assert any(g is not None and g.abs().sum() > 0 for g in grads)       # the backbone is trained
    assert all(g is None or torch.isfinite(g).all() for g in grads)
    with torch.no_grad():
        feats = model.embed(data.batch(torch.arange(2)))
    assert feats.shape == (2, model.embed_dim) and torch.isfinite(feats).all()


@pytest.mark.parametrize("method", METHODS)
def test_backbone_for_other_data_is_refused_at_create(method):
    """A text, signal or clip backbone on images: a ValueError naming the backbone and the kinds."""
    data = images(16)
    for backbone in ("transformer", "conv1d", "frames"):
        kind = backbones.input_kind(backbone)
        with pytest.raises(ValueError, match=f"backbone='{backbone}' encodes {kind} data; {method} "
                                             f"trains on image"):   # (or spectrogram)
            sslkit.create(method, data=data, backbone=backbone)
        with pytest.raises(ValueError, match=f"backbone='{backbone}'"):
            sslkit.create(method, backbone=backbone)                 # no data: still refused
