"""Real datasets: ``cifar10``, ``stl10``, ``mnist`` through torchvision's own dataset classes.

torchvision downloads and parses the files (``download=True``, into ``root``); we only convert its
numpy arrays / tensors to our uint8 (N, C, H, W) layout in one go (no per-sample ``__getitem__``).
Without internet access (or with missing/corrupt files) a :class:`DatasetUnavailable` error says
where the files were looked for, how to get them, and which embedded datasets work offline.

``verify=False`` skips torchvision's MD5 checks of CIFAR-10/STL-10 files (it then only checks that
the files exist): for re-packed copies of the data, and for the tests, which build tiny fake files
in the real on-disk formats. MNIST's raw files are never MD5-checked by torchvision.
``seed`` has no effect on these datasets (their splits are fixed).
"""
from __future__ import annotations

import os
from urllib.error import URLError

import functools
from types import SimpleNamespace

import numpy as np
import torch

from sslkit import checks
from sslkit.data.base import Dataset
from sslkit.data.registry import names, register

MNIST_CLASSES = [str(d) for d in range(10)]
STL10_CLASSES = ["airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck"]


class DatasetUnavailable(RuntimeError):
    """A real dataset's files are missing or corrupt and could not be downloaded."""


@functools.lru_cache(maxsize=1)
def _tv() -> SimpleNamespace:
    """torchvision's dataset classes plus our ``verify=False`` variants (imported on first use:
    torchvision is slow to import and only the real datasets need it)."""
    from torchvision import datasets as tvd

    class CIFAR10Unverified(tvd.CIFAR10):
        """CIFAR10 that only checks the files exist, then parses them as usual."""

        def _check_integrity(self) -> bool:
            files = [f for f, _ in self.train_list + self.test_list] + [self.meta["filename"]]
            return all(os.path.isfile(os.path.join(self.root, self.base_folder, f)) for f in files)

        def _load_meta(self) -> None:  # the original also MD5-checks batches.meta
            import pickle

            with open(os.path.join(self.root, self.base_folder, self.meta["filename"]), "rb") as f:
                self.classes = pickle.load(f, encoding="latin1")[self.meta["key"]]
            self.class_to_idx = {c: i for i, c in enumerate(self.classes)}

    class STL10Unverified(tvd.STL10):
        """STL10 that only checks the files exist."""

        def _check_integrity(self) -> bool:
            files = [f for f, _ in self.train_list + self.test_list]
            return all(os.path.isfile(os.path.join(self.root, self.base_folder, f)) for f in files)

    return SimpleNamespace(CIFAR10=tvd.CIFAR10, STL10=tvd.STL10, MNIST=tvd.MNIST,
                           CIFAR10Unverified=CIFAR10Unverified, STL10Unverified=STL10Unverified)


def _open(name: str, cls: type, root: str, folder: str, url: str, files: list[str],
          download: bool, **kwargs):
    """Instantiate torchvision's dataset; any failure -> DatasetUnavailable with instructions."""
    try:
        return cls(root, download=download, **kwargs)
    except (URLError, OSError, RuntimeError) as err:
        where = os.path.abspath(os.path.join(root, folder))
        why = ("the download failed (no internet access?)" if download
               else "its files are missing or corrupt and download=False")
        raise DatasetUnavailable(
            f"dataset {name!r} is not available: {why} ({type(err).__name__}: {err}).\n"
            f"  Looked in: {where}\n"
            f"  To get it: run once on a machine with internet access with download=True "
            f"(torchvision downloads {url}), or download that archive yourself and unpack it so "
            f"that {where} contains {', '.join(files)}; then load with download=False "
            f"(add verify=False for re-packed copies whose MD5 sums differ).\n"
            f"  Works offline: {', '.join(names(embedded=True))} "
            f"(e.g. sslkit.data.load('shapes'))."
        ) from err


def _flags(download: bool, verify: bool) -> None:
    checks.choice("download", download, (True, False))
    checks.choice("verify", verify, (True, False))


def _meta(source: str, licence: str, root: str, folder: str) -> dict:
    return {"source": source, "licence": licence, "path": os.path.join(root, folder)}


@register("cifar10", kind="image", splits=("train", "test"), embedded=False,
          description="CIFAR-10: 60,000 32x32 RGB images, 10 classes (download ~170 MB)")
def build_cifar10(split: str, root: str, seed: int, download: bool = True,
                  verify: bool = True) -> Dataset:
    """CIFAR-10 (Krizhevsky, 2009) as uint8 (N, 3, 32, 32): 50,000 train / 10,000 test."""
    _flags(download, verify)
    cls = _tv().CIFAR10 if verify else _tv().CIFAR10Unverified
    files = [f for f, _ in cls.train_list + cls.test_list] + [cls.meta["filename"]]
    ds = _open("cifar10", cls, root, cls.base_folder, cls.url, files, download,
               train=split == "train")
    x = torch.from_numpy(np.ascontiguousarray(ds.data)).permute(0, 3, 1, 2).contiguous()  # NHWC->NCHW
    return Dataset(name="cifar10", split=split, kind="image", x=x,
                   labels=torch.as_tensor(ds.targets, dtype=torch.int64), classes=list(ds.classes),
                   meta=_meta(cls.url, "no explicit licence; free for research (Krizhevsky 2009)",
                              root, cls.base_folder))


@register("stl10", kind="image", splits=("train", "test", "unlabeled", "train+unlabeled"),
          embedded=False,
          description="STL-10: 96x96 RGB, 10 classes, 5,000 train / 8,000 test / 100,000 unlabeled "
                      "(download ~2.6 GB)")
def build_stl10(split: str, root: str, seed: int, download: bool = True, verify: bool = True,
                folds: int | None = None) -> Dataset:
    """STL-10 (Coates et al., 2011) as uint8 (N, 3, 96, 96); unlabeled images have label -1.

    ``folds`` (0..9) selects one of the 10 predefined 1,000-image training folds.
    """
    _flags(download, verify)
    if folds is not None:
        folds = checks.integer("folds", folds, min=0, max=9)
    cls = _tv().STL10 if verify else _tv().STL10Unverified
    files = [f for f, _ in cls.train_list + cls.test_list] + [cls.class_names_file]
    ds = _open("stl10", cls, root, cls.base_folder, cls.url, files, download, split=split,
               folds=folds)
    classes = list(getattr(ds, "classes", STL10_CLASSES))
    return Dataset(name="stl10", split=split, kind="image",
                   x=torch.from_numpy(np.ascontiguousarray(ds.data)),  # already (N, 3, 96, 96)
                   labels=torch.as_tensor(ds.labels, dtype=torch.int64), classes=classes,
                   meta=_meta(cls.url, "no explicit licence; images from ImageNet, for research",
                              root, cls.base_folder))


@register("mnist", kind="image", splits=("train", "test"), embedded=False,
          description="MNIST: 70,000 28x28 grey handwritten digits, 10 classes (download ~12 MB)")
def build_mnist(split: str, root: str, seed: int, download: bool = True,
                verify: bool = True) -> Dataset:
    """MNIST (LeCun et al., 1998) as uint8 (N, 1, 28, 28): 60,000 train / 10,000 test."""
    _flags(download, verify)
    cls = _tv().MNIST
    files = [os.path.splitext(f)[0] for f, _ in cls.resources]  # torchvision reads the unzipped files
    ds = _open("mnist", cls, root, os.path.join("MNIST", "raw"), cls.mirrors[0] + cls.resources[0][0],
               files, download, train=split == "train")
    return Dataset(name="mnist", split=split, kind="image", x=ds.data.unsqueeze(1).contiguous(),
                   labels=ds.targets.to(torch.int64), classes=list(MNIST_CLASSES),
                   meta=_meta(cls.mirrors[0], "CC BY-SA 3.0 (Yann LeCun and Corinna Cortes)",
                              root, os.path.join("MNIST", "raw")))
