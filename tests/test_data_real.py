"""Real datasets (cifar10, stl10, mnist) from tiny fake files in the real on-disk formats.

No network: files are written to tmp_path exactly as the official archives unpack, then loaded
through torchvision's own parsing with download=False. The offline error is tested by making every
URL open fail.
"""
import os
import pickle
import struct
import urllib.error
import urllib.request

import numpy as np
import pytest
import torch

import sslkit
from sslkit.data.real import DatasetUnavailable

CIFAR_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
                 "truck"]


def fake_cifar(root, n=3):
    """cifar-10-batches-py/data_batch_1..5, test_batch (pickled dicts), batches.meta."""
    rng = np.random.default_rng(0)
    folder = root / "cifar-10-batches-py"
    folder.mkdir()
    written = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)  # rows: R plane, G plane, B plane
        labels = rng.integers(0, 10, n).tolist()
        with open(folder / name, "wb") as f:
            pickle.dump({"data": data, "labels": labels}, f)
        written[name] = (data, labels)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": CIFAR_CLASSES}, f)
    return written


def fake_stl(root, n=4, n_unlabeled=5):
    """stl10_binary/{train,test}_{X,y}.bin, unlabeled_X.bin (column-major images), class names,
    fold indices."""
    rng = np.random.default_rng(1)
    folder = root / "stl10_binary"
    folder.mkdir()
    images = {k: rng.integers(0, 256, (m, 3, 96, 96), dtype=np.uint8)
              for k, m in [("train", n), ("test", n), ("unlabeled", n_unlabeled)]}
    labels = {k: rng.integers(1, 11, n, dtype=np.uint8) for k in ("train", "test")}  # 1-based
    for k, im in images.items():  # STL-10 stores each channel column-major
        im.transpose(0, 1, 3, 2).tofile(folder / f"{k}_X.bin")
    for k, lab in labels.items():
        lab.tofile(folder / f"{k}_y.bin")
    (folder / "class_names.txt").write_text("\n".join(sslkit.data.real.STL10_CLASSES) + "\n")
    (folder / "fold_indices.txt").write_text("\n".join("0 2" if i == 0 else "1 3" for i in range(10)))
    return images, labels


def fake_mnist(root, n=3):
    """MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte (big-endian idx headers)."""
    rng = np.random.default_rng(2)
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    out = {}
    for prefix in ("train", "t10k"):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, n, dtype=np.uint8)
        (raw / f"{prefix}-images-idx3-ubyte").write_bytes(
            struct.pack(">IIII", 0x0803, n, 28, 28) + images.tobytes())
        (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(struct.pack(">II", 0x0801, n) + labels.tobytes())
        out[prefix] = (images, labels)
    return out


def test_cifar10_from_fake_files(tmp_path):
    written = fake_cifar(tmp_path)
    ds = sslkit.data.load("cifar10", "train", root=str(tmp_path), download=False, verify=False)
    assert ds.x.shape == (15, 3, 32, 32) and ds.x.dtype == torch.uint8 and ds.x.is_contiguous()
    assert ds.classes == CIFAR_CLASSES and ds.kind == "image"
    data, labels = written["data_batch_2"]
    for j in range(3):  # naive per-pixel reference: channel c, row r, col k at c*1024 + r*32 + k
        i = 3 + j
        for c, r, k in [(0, 0, 0), (1, 5, 7), (2, 31, 31)]:
            assert ds.x[i, c, r, k] == data[j, c * 1024 + r * 32 + k]
        assert ds.labels[i] == labels[j]
    te = sslkit.data.load("cifar10", "test", root=tmp_path, download=False, verify=False)
    assert len(te) == 3 and torch.equal(te.labels, torch.tensor(written["test_batch"][1]))


def test_cifar10_md5_check_is_on_by_default(tmp_path):
    fake_cifar(tmp_path)
    with pytest.raises(DatasetUnavailable, match="verify=False"):
        sslkit.data.load("cifar10", root=str(tmp_path), download=False)


@pytest.mark.parametrize("split,n", [("train", 4), ("test", 4), ("unlabeled", 5), ("train+unlabeled", 9)])
def test_stl10_from_fake_files(tmp_path, split, n):
    images, labels = fake_stl(tmp_path)
    ds = sslkit.data.load("stl10", split, root=str(tmp_path), download=False, verify=False)
    assert ds.x.shape == (n, 3, 96, 96) and ds.x.dtype == torch.uint8 and ds.x.is_contiguous()
    assert ds.classes == sslkit.data.real.STL10_CLASSES
    if split in ("train", "test"):
        assert np.array_equal(ds.x.numpy(), images[split])
        assert ds.labels.tolist() == (labels[split].astype(int) - 1).tolist()
    elif split == "unlabeled":
        assert np.array_equal(ds.x.numpy(), images["unlabeled"]) and (ds.labels == -1).all()
    else:
        assert (ds.labels[:4] >= 0).all() and (ds.labels[4:] == -1).all()
        assert np.array_equal(ds.x[4:].numpy(), images["unlabeled"])


def test_stl10_folds(tmp_path):
    images, _ = fake_stl(tmp_path)
    ds = sslkit.data.load("stl10", root=str(tmp_path), download=False, verify=False, folds=0)
    assert np.array_equal(ds.x.numpy(), images["train"][[0, 2]])
    with pytest.raises(ValueError, match="folds"):
        sslkit.data.load("stl10", root=str(tmp_path), download=False, verify=False, folds=10)


def test_mnist_from_fake_files(tmp_path):
    written = fake_mnist(tmp_path)
    for split, prefix in [("train", "train"), ("test", "t10k")]:
        ds = sslkit.data.load("mnist", split, root=str(tmp_path), download=False)
        assert ds.x.shape == (3, 1, 28, 28) and ds.x.dtype == torch.uint8
        assert np.array_equal(ds.x[:, 0].numpy(), written[prefix][0])
        assert ds.labels.tolist() == written[prefix][1].astype(int).tolist()
        assert ds.classes == [str(d) for d in range(10)]


def _offline(monkeypatch):
    def no_network(*args, **kwargs):
        raise urllib.error.URLError("no network in this test")
    monkeypatch.setattr(urllib.request, "urlopen", no_network)


@pytest.mark.parametrize("name,folder,url", [
    ("cifar10", "cifar-10-batches-py", "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"),
    ("stl10", "stl10_binary", "http://ai.stanford.edu/~acoates/stl10/stl10_binary.tar.gz"),
    ("mnist", os.path.join("MNIST", "raw"), "train-images-idx3-ubyte.gz"),
])
def test_offline_download_error_is_helpful(tmp_path, monkeypatch, name, folder, url):
    _offline(monkeypatch)
    with pytest.raises(DatasetUnavailable) as info:
        sslkit.data.load(name, root=str(tmp_path), download=True)
    msg = str(info.value)
    assert isinstance(info.value, RuntimeError)
    assert repr(name) in msg and "download failed" in msg
    assert os.path.join(str(tmp_path), folder) in msg  # where it looked
    assert url in msg and "internet" in msg              # how to get the files
    for embedded in sslkit.data.names(embedded=True):    # what works offline
        assert embedded in msg


def test_missing_files_without_download(tmp_path):
    with pytest.raises(DatasetUnavailable, match="download=False"):
        sslkit.data.load("mnist", root=str(tmp_path), download=False)


@pytest.mark.parametrize("name", ["cifar10", "stl10", "mnist"])
@pytest.mark.parametrize("flag,value", [("download", "yes"), ("download", 1), ("verify", None)])
def test_bad_flags(tmp_path, name, flag, value):
    with pytest.raises(ValueError, match=flag):
        sslkit.data.load(name, root=str(tmp_path), **{flag: value})


# -- safe and strict reading (issue 14.3) --------------------------------------------------------
class _RunsCode:
    """Unpickling this calls os.system: a crafted "dataset" file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("verify", [False, True])
def test_cifar10_never_runs_code_from_a_crafted_file(tmp_path, verify, monkeypatch):
    fake_cifar(tmp_path)
    marker = tmp_path / "pwned"
    with open(tmp_path / "cifar-10-batches-py" / "data_batch_1", "wb") as f:
        pickle.dump({"data": _RunsCode(marker), "labels": [0]}, f)
    if verify:  # even if the MD5 sums matched (a crafted file with a forged sum list)
        monkeypatch.setattr(sslkit.data.real._tv(), "check_integrity", lambda path, md5=None: True,
                            raising=False)
    with pytest.raises(DatasetUnavailable) as info:
        sslkit.data.load("cifar10", root=str(tmp_path), download=False, verify=verify)
    assert not marker.exists()
    assert "data_batch_1" in str(info.value) and "posix.system" in str(info.value)


def test_cifar10_reads_protocol_2_pickles_with_bytes_keys(tmp_path):
    written = fake_cifar(tmp_path)
    data, labels = written["test_batch"]
    with open(tmp_path / "cifar-10-batches-py" / "test_batch", "wb") as f:
        pickle.dump({b"data": data, b"labels": np.array(labels)}, f, protocol=2)
    ds = sslkit.data.load("cifar10", "test", root=str(tmp_path), download=False, verify=False)
    assert ds.labels.tolist() == labels and ds.x[1, 2, 3, 4] == data[1, 2 * 1024 + 3 * 32 + 4]


def _truncate(path, keep=0.5):
    raw = path.read_bytes()
    path.write_bytes(raw[: int(len(raw) * keep)])


@pytest.mark.parametrize("name, split, make, file, corrupt", [
    ("cifar10", "train", fake_cifar, "cifar-10-batches-py/data_batch_3", _truncate),
    ("cifar10", "test", fake_cifar, "cifar-10-batches-py/batches.meta", _truncate),
    ("cifar10", "train", fake_cifar, "cifar-10-batches-py/data_batch_2",
     lambda p: p.write_bytes(pickle.dumps({"data": np.zeros((3, 100), np.uint8), "labels": [0, 1, 2]}))),
    ("cifar10", "test", fake_cifar, "cifar-10-batches-py/test_batch",
     lambda p: p.write_bytes(pickle.dumps({"data": np.zeros((3, 3072), np.uint8), "labels": [0, 1]}))),
    ("stl10", "train", fake_stl, "stl10_binary/train_X.bin", lambda p: _truncate(p, 0.9)),
    ("stl10", "unlabeled", fake_stl, "stl10_binary/unlabeled_X.bin", lambda p: _truncate(p, 0.9)),
    ("stl10", "train", fake_stl, "stl10_binary/train_y.bin", lambda p: _truncate(p, 0.5)),
    ("mnist", "train", fake_mnist, "MNIST/raw/train-images-idx3-ubyte", lambda p: _truncate(p, 0.9)),
    ("mnist", "test", fake_mnist, "MNIST/raw/t10k-labels-idx1-ubyte", lambda p: _truncate(p, 0.9)),
    ("mnist", "train", fake_mnist, "MNIST/raw/train-labels-idx1-ubyte", lambda p: p.write_bytes(b"\x00\x00")),
])
@pytest.mark.parametrize("verify", [False, True])
def test_corrupt_files_raise_dataset_unavailable_naming_the_file(tmp_path, monkeypatch, name, split,
                                                                 make, file, corrupt, verify):
    make(tmp_path)
    corrupt(tmp_path / file)
    monkeypatch.setattr(sslkit.data.real._tv(), "check_integrity",  # as if the MD5 sums matched
                        lambda path, md5=None: os.path.isfile(path), raising=False)
    if name == "stl10":
        monkeypatch.setattr(sslkit.data.real._tv().STL10, "_check_integrity", lambda self: True)
    _offline(monkeypatch)
    with pytest.raises(DatasetUnavailable) as info:
        sslkit.data.load(name, split, root=str(tmp_path), download=True, verify=verify)
    assert str(tmp_path / file) in str(info.value) and "corrupt" in str(info.value)
