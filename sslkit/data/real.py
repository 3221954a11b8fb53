"""Real datasets: ``cifar10``, ``stl10``, ``mnist``.

torchvision downloads the archives (``download=True``, into ``root``) and checks their MD5 sums;
we read the files into our uint8 (N, C, H, W) layout in one go (no per-sample ``__getitem__``).
Without internet access (or with missing files) a :class:`DatasetUnavailable` error says where the
files were looked for, how to get them, and which embedded datasets work offline.

Reading is safe and strict whatever ``verify`` says:

* CIFAR-10's batches are Python pickles. A pickle can run code when loaded, so they are read with
  :class:`SafeUnpickler`, which rebuilds only dicts, lists, strings, numbers and NumPy arrays - a
  crafted file fails to load instead of running anything.
* Every file is checked for the size and layout its format implies (idx headers for MNIST, whole
  96x96 images for STL-10, a 3072-byte row per CIFAR image and one label per row); a truncated or
  corrupt file raises :class:`DatasetUnavailable` naming that file.

``verify=False`` skips the MD5 checks of CIFAR-10/STL-10 files (the files must still exist and
parse): for re-packed copies of the data, and for the tests, which build tiny fake files in the
real on-disk formats. MNIST's raw files are never MD5-checked by torchvision.
``seed`` has no effect on these datasets (their splits are fixed).
"""
from __future__ import annotations

import functools
import os
import pickle
import struct
from types import SimpleNamespace
from urllib.error import URLError

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
    """torchvision's dataset classes and download helpers (imported on first use: torchvision is
    slow to import and only the real datasets need it)."""
    from torchvision import datasets as tvd
    from torchvision.datasets.utils import check_integrity, download_and_extract_archive

    return SimpleNamespace(CIFAR10=tvd.CIFAR10, STL10=tvd.STL10, MNIST=tvd.MNIST,
                           check_integrity=check_integrity, download=download_and_extract_archive)


# -- safe, strict reading ------------------------------------------------------------------------
class SafeUnpickler(pickle.Unpickler):
    """Unpickles only what dataset pickles hold: dicts, lists, tuples, strings, bytes, numbers and
    NumPy arrays/scalars. Any other global (a class, ``os.system``, ...) raises UnpicklingError,
    so loading a crafted file never runs code."""

    ALLOWED = {("numpy", "ndarray"), ("numpy", "dtype"),
               ("numpy._core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "scalar"),
               ("numpy._core.numeric", "_frombuffer"),
               ("_codecs", "encode")}  # how Python 3 writes bytes in protocol-2 pickles

    def find_class(self, module: str, name: str):
        if module.startswith("numpy.core"):  # NumPy < 2 wrote numpy.core.*, NumPy 2 reads numpy._core.*
            module = "numpy._core" + module[len("numpy.core"):]
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load global {module}.{name} (only NumPy arrays, "
                                         f"dicts, lists, strings and numbers are allowed)")
        if module.startswith("numpy._core") and not hasattr(np, "_core"):  # NumPy 1.x
            module = "numpy.core" + module[len("numpy._core"):]
        return super().find_class(module, name)


def _corrupt(dataset: str, path: str, why: str, url: str) -> DatasetUnavailable:
    return DatasetUnavailable(
        f"dataset {dataset!r} is not available: the file {path!r} is corrupt or truncated ({why}).\n"
        f"  To fix it: delete {os.path.dirname(path)!r} and load again with download=True "
        f"(torchvision downloads {url}), or unpack that archive again.")


def _safe_unpickle(dataset: str, path: str, url: str):
    try:
        with open(path, "rb") as f:
            return SafeUnpickler(f, encoding="latin1").load()
    except Exception as err:  # truncated pickles raise EOFError, UnpicklingError, ValueError, ...
        raise _corrupt(dataset, path, f"{type(err).__name__}: {err}", url) from err


def _read_cifar_batch(path: str, url: str) -> tuple[np.ndarray, list[int]]:
    entry = _safe_unpickle("cifar10", path, url)
    if isinstance(entry, dict):  # files re-pickled under Python 3 may have bytes keys
        entry = {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in entry.items()}
    data = entry.get("data") if isinstance(entry, dict) else None
    labels = entry.get("labels") if isinstance(entry, dict) else None
    if not (isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim == 2
            and data.shape[1] == 3 * 32 * 32):
        raise _corrupt("cifar10", path, "'data' is not a uint8 array of 3072-byte rows", url)
    labels = list(labels) if isinstance(labels, (list, np.ndarray)) else None
    if (labels is None or len(labels) != len(data)
            or not all(isinstance(v, (int, np.integer)) and 0 <= v < 10 for v in labels)):
        raise _corrupt("cifar10", path, f"'labels' must be {len(data)} class ids in 0..9", url)
    return data, [int(v) for v in labels]


def _check_stl10_files(folder: str, url: str) -> None:
    """Every existing STL-10 file holds whole 3x96x96 images, one label in 1..10 per image."""
    image = 3 * 96 * 96
    counts = {}
    for part in ("train", "test", "unlabeled"):
        path = os.path.join(folder, f"{part}_X.bin")
        if os.path.isfile(path):
            size = os.path.getsize(path)
            if size == 0 or size % image:
                raise _corrupt("stl10", path, f"{size} bytes is not a whole number of "
                               f"{image}-byte 3x96x96 images", url)
            counts[part] = size // image
        labels = os.path.join(folder, f"{part}_y.bin")
        if part != "unlabeled" and os.path.isfile(labels):
            y = np.fromfile(labels, dtype=np.uint8)
            if part in counts and len(y) != counts[part]:
                raise _corrupt("stl10", labels, f"{len(y)} labels for {counts[part]} images", url)
            if len(y) and not ((y >= 1) & (y <= 10)).all():
                raise _corrupt("stl10", labels, "labels outside 1..10", url)


def _check_mnist_files(folder: str, url: str) -> None:
    """Every existing MNIST idx file has a valid header and exactly the bytes it announces."""
    for prefix in ("train", "t10k"):
        n = {}
        for kind, magic, dims in (("images", 2051, 3), ("labels", 2049, 1)):
            path = os.path.join(folder, f"{prefix}-{kind}-idx{dims}-ubyte")
            if not os.path.isfile(path):
                continue
            size = os.path.getsize(path)
            with open(path, "rb") as f:
                head = f.read(4 * (dims + 1))
            if len(head) < 4 * (dims + 1):
                raise _corrupt("mnist", path, f"only {size} bytes, shorter than its header", url)
            got_magic, *shape = struct.unpack(f">{dims + 1}I", head)
            if got_magic != magic or (dims == 3 and shape[1:] != [28, 28]):
                raise _corrupt("mnist", path, f"header {[got_magic, *shape]} is not an MNIST {kind} "
                               f"header", url)
            expected = len(head) + int(np.prod(shape))
            if size != expected:
                raise _corrupt("mnist", path, f"{size} bytes where its header announces {expected}",
                               url)
            n[kind] = shape[0]
        if len(n) == 2 and n["images"] != n["labels"]:
            raise _corrupt("mnist", os.path.join(folder, f"{prefix}-labels-idx1-ubyte"),
                           f"{n['labels']} labels for {n['images']} images", url)


# -- availability ----------------------------------------------------------------------------------
def _unavailable(name: str, root: str, folder: str, url: str, files: list[str], download: bool,
                 err: BaseException | None) -> DatasetUnavailable:
    where = os.path.abspath(os.path.join(root, folder))
    why = ("the download failed (no internet access?)" if download
           else "its files are missing or corrupt and download=False")
    detail = f" ({type(err).__name__}: {err})" if err is not None else ""
    return DatasetUnavailable(
        f"dataset {name!r} is not available: {why}{detail}.\n"
        f"  Looked in: {where}\n"
        f"  To get it: run once on a machine with internet access with download=True "
        f"(torchvision downloads {url}), or download that archive yourself and unpack it so "
        f"that {where} contains {', '.join(files)}; then load with download=False "
        f"(add verify=False for re-packed copies whose MD5 sums differ).\n"
        f"  Works offline: {', '.join(names(embedded=True))} "
        f"(e.g. sslkit.data.load('shapes')).")


def _open(name: str, cls: type, root: str, folder: str, url: str, files: list[str],
          download: bool, **kwargs):
    """Instantiate torchvision's dataset (download, MD5 check, parse); any failure ->
    DatasetUnavailable with instructions."""
    try:
        return cls(root, download=download, **kwargs)
    except (URLError, OSError, RuntimeError, ValueError, AssertionError, EOFError) as err:
        raise _unavailable(name, root, folder, url, files, download, err) from err


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
    tv, C = _tv(), _tv().CIFAR10
    folder = os.path.join(root, C.base_folder)
    listed = C.train_list + C.test_list + [[C.meta["filename"], C.meta["md5"]]]
    files = [f for f, _ in listed]

    def usable() -> bool:
        return all(tv.check_integrity(os.path.join(folder, f), md5 if verify else None)
                   for f, md5 in listed)

    if not usable():
        err = None
        if download:
            try:
                tv.download(C.url, root, filename=C.filename, md5=C.tgz_md5)
            except (URLError, OSError, RuntimeError) as e:
                err = e
        if err is not None or not usable():
            raise _unavailable("cifar10", root, C.base_folder, C.url, files, download, err)
    parts = [_read_cifar_batch(os.path.join(folder, f), C.url)
             for f, _ in (C.train_list if split == "train" else C.test_list)]
    data = np.concatenate([d for d, _ in parts]).reshape(-1, 3, 32, 32)  # rows: R, G, B planes
    labels = [y for _, ys in parts for y in ys]
    meta_path = os.path.join(folder, C.meta["filename"])
    meta = _safe_unpickle("cifar10", meta_path, C.url)
    classes = meta.get(C.meta["key"]) if isinstance(meta, dict) else None
    if not (isinstance(classes, list) and len(classes) == 10 and all(isinstance(c, str) for c in classes)):
        raise _corrupt("cifar10", meta_path, f"{C.meta['key']!r} is not a list of 10 class names", C.url)
    return Dataset(name="cifar10", split=split, kind="image",
                   x=torch.from_numpy(np.ascontiguousarray(data)),
                   labels=torch.as_tensor(labels, dtype=torch.int64), classes=list(classes),
                   meta=_meta(C.url, "no explicit licence; free for research (Krizhevsky 2009)",
                              root, C.base_folder))


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
    S = _tv().STL10
    cls = S if verify else _stl10_unverified()
    files = [f for f, _ in S.train_list + S.test_list] + [S.class_names_file]
    _check_stl10_files(os.path.join(root, S.base_folder), S.url)
    ds = _open("stl10", cls, root, S.base_folder, S.url, files, download, split=split, folds=folds)
    classes = list(getattr(ds, "classes", STL10_CLASSES))
    return Dataset(name="stl10", split=split, kind="image",
                   x=torch.from_numpy(np.ascontiguousarray(ds.data)),  # already (N, 3, 96, 96)
                   labels=torch.as_tensor(ds.labels, dtype=torch.int64), classes=classes,
                   meta=_meta(S.url, "no explicit licence; images from ImageNet, for research",
                              root, S.base_folder))


@functools.lru_cache(maxsize=1)
def _stl10_unverified() -> type:
    class STL10Unverified(_tv().STL10):
        """STL10 that only checks the files exist (the sizes are checked by _check_stl10_files)."""

        def _check_integrity(self) -> bool:
            files = [f for f, _ in self.train_list + self.test_list]
            return all(os.path.isfile(os.path.join(self.root, self.base_folder, f)) for f in files)

    return STL10Unverified


@register("mnist", kind="image", splits=("train", "test"), embedded=False,
          description="MNIST: 70,000 28x28 grey handwritten digits, 10 classes (download ~12 MB)")
def build_mnist(split: str, root: str, seed: int, download: bool = True,
                verify: bool = True) -> Dataset:
    """MNIST (LeCun et al., 1998) as uint8 (N, 1, 28, 28): 60,000 train / 10,000 test."""
    _flags(download, verify)
    M = _tv().MNIST
    files = [os.path.splitext(f)[0] for f, _ in M.resources]  # torchvision reads the unzipped files
    folder = os.path.join("MNIST", "raw")
    url = M.mirrors[0] + M.resources[0][0]
    _check_mnist_files(os.path.join(root, folder), url)
    ds = _open("mnist", M, root, folder, url, files, download, train=split == "train")
    return Dataset(name="mnist", split=split, kind="image", x=ds.data.unsqueeze(1).contiguous(),
                   labels=ds.targets.to(torch.int64), classes=list(MNIST_CLASSES),
                   meta=_meta(M.mirrors[0], "CC BY-SA 3.0 (Yann LeCun and Corinna Cortes)",
                              root, folder))
