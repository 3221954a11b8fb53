"""The one container every dataset is returned in.

A ``Dataset`` holds a whole (small) dataset as tensors, so it can be moved to the GPU once and
batches are drawn by indexing on the device - no per-sample Python, no DataLoader in the hot path.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any, Literal, get_args

import torch

from sslkit import checks

Kind = Literal["image", "text", "signal", "clip", "spectrogram"]

# What `x` holds for each kind of data:
#   image : uint8 (N, C, H, W) in [0, 255]
#   clip  : uint8 (N, T, C, H, W) in [0, 255]
#   text  : int64 (N, L) token ids (see `tokenizer`)
#   signal: float32 (N, C, T)
#   spectrogram: float32 (N, C, F, T) (frequency x time, e.g. log-mel in dB): image-shaped, but not an
#       image - image views (colour, crops, flips) do not apply (see sslkit.data.spoken_digits)
KINDS: tuple[str, ...] = get_args(Kind)


@dataclass
class Dataset:
    """A whole dataset as tensors, plus labels and metadata.

    Attributes:
        name, split: which dataset and split this is.
        kind: "image", "text", "signal", "clip" or "spectrogram" (see the module docstring for the
            layout of ``x``).
        x: the inputs, stored compactly (uint8 for images and clips).
        labels: int64 (N,) class ids, -1 where a sample is unlabeled (e.g. STL-10 ``unlabeled``).
        classes: class names, ``classes[labels[i]]``.
        factors: nuisance/generative factors, name -> (N,) tensor (e.g. colour, size for ``shapes``).
        meta: free-form facts (source, seed, licence, factor value names, ...).
        tokenizer: for text datasets, the tokenizer that produced ``x``.
    """

    name: str
    split: str
    kind: Kind
    x: torch.Tensor
    labels: torch.Tensor
    classes: list[str]
    factors: dict[str, torch.Tensor] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    tokenizer: Any = None

    def __post_init__(self) -> None:
        checks.choice("kind", self.kind, KINDS)
        if self.labels.shape != (len(self.x),):
            raise ValueError(f"labels must have shape ({len(self.x)},); got {tuple(self.labels.shape)}")
        for k, v in self.factors.items():
            if len(v) != len(self.x):
                raise ValueError(f"factor {k!r} has {len(v)} entries for {len(self.x)} samples")

    # -- views of x by kind (clear errors instead of silently wrong data) --------------------------
    def _as(self, kind: str) -> torch.Tensor:
        if self.kind != kind:
            raise AttributeError(f"dataset {self.name!r} holds {self.kind} data, not {kind} data")
        return self.x

    @property
    def images(self) -> torch.Tensor:
        """uint8 (N, C, H, W)."""
        return self._as("image")

    @property
    def tokens(self) -> torch.Tensor:
        """int64 (N, L)."""
        return self._as("text")

    @property
    def signals(self) -> torch.Tensor:
        """float32 (N, C, T)."""
        return self._as("signal")

    @property
    def clips(self) -> torch.Tensor:
        """uint8 (N, T, C, H, W)."""
        return self._as("clip")

    @property
    def spectrograms(self) -> torch.Tensor:
        """float32 (N, C, F, T)."""
        return self._as("spectrogram")

    # -- facts --------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.x)

    @property
    def device(self) -> torch.device:
        return self.x.device

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def sample_shape(self) -> tuple[int, ...]:
        """Shape of one sample, e.g. (C, H, W) for images, (L,) for text."""
        return tuple(self.x.shape[1:])

    @property
    def in_channels(self) -> int | None:
        """Channels of an image/clip/signal/spectrogram sample; None for text."""
        if self.kind in ("image", "spectrogram"):
            return self.x.shape[1]
        if self.kind == "clip":
            return self.x.shape[2]
        if self.kind == "signal":
            return self.x.shape[1]
        return None

    @property
    def vocab_size(self) -> int | None:
        return None if self.tokenizer is None else len(self.tokenizer)

    def __repr__(self) -> str:
        return (f"Dataset(name={self.name!r}, split={self.split!r}, kind={self.kind!r}, "
                f"x={tuple(self.x.shape)} {self.x.dtype}, classes={self.num_classes}, "
                f"factors={sorted(self.factors)}, device={self.device})")

    # -- moving and slicing ---------------------------------------------------------------------
    def to(self, device: torch.device | str) -> Dataset:
        """A copy on ``device`` (tensors moved once; batches are then drawn there)."""
        return replace(self, x=self.x.to(device), labels=self.labels.to(device),
                       factors={k: v.to(device) for k, v in self.factors.items()})

    def _index(self, index: Any, allow_slice: bool) -> torch.Tensor | slice:
        """Validate ``index``: int (N,)-indices in [-N, N), or a bool mask (N,); a slice if allowed.

        The range check reads the index back to the host, so it runs for CPU index tensors only
        (``batches`` yields indices already on the device, and reading those would sync every step).
        """
        n = len(self)
        if allow_slice and isinstance(index, slice):
            return index
        if isinstance(index, (list, tuple, range)):
            index = torch.as_tensor(list(index), dtype=torch.long)
        kinds = "a slice, " if allow_slice else ""
        if not isinstance(index, torch.Tensor):
            raise ValueError(f"index must be {kinds}an int index tensor or a bool mask "
                             f"({type(index).__name__} given)")
        if index.dtype == torch.bool:
            if tuple(index.shape) != (n,):
                raise ValueError(f"index is a bool mask of shape {tuple(index.shape)}; allowed: shape ({n},)")
        else:
            checks.tensor("index", index, ndim=(0, 1), dtypes="int")
            if index.device.type == "cpu" and index.numel():
                lo, hi = int(index.min()), int(index.max())
                if lo < -n or hi >= n:
                    raise ValueError(f"index has values in [{lo}, {hi}]; allowed: [0, {n - 1}] "
                                     f"(the dataset has {n} samples)")
        return index.to(self.x.device)

    def subset(self, index: torch.Tensor | slice) -> Dataset:
        """The samples at ``index`` (a slice, an int index tensor or a bool mask (N,)).

        Bad indices (float, out of range for CPU tensors, wrong mask shape) raise a ValueError.
        """
        index = self._index(index, allow_slice=True)
        return replace(self, x=self.x[index], labels=self.labels[index],
                       factors={k: v[index] for k, v in self.factors.items()})

    def batch(self, index: torch.Tensor) -> torch.Tensor:
        """Inputs at ``index`` (int indices or a bool mask, checked as in :meth:`subset`) in the form
        models take: images/clips as float in [0, 1]."""
        x = self.x[self._index(index, allow_slice=False)]
        if self.kind in ("image", "clip"):
            return x.float().div_(255)
        return x

    def batches(self, batch_size: int, *, shuffle: bool = True, drop_last: bool = True,
                generator: torch.Generator | None = None) -> Iterator[torch.Tensor]:
        """Yield index tensors (on this dataset's device) covering one epoch.

        The permutation is drawn on the CPU from ``generator`` (reproducible on every device) and
        moved once; indexing then happens on the device.
        """
        batch_size = checks.integer("batch_size", batch_size, min=1)
        n = len(self)
        if drop_last and batch_size > n:
            raise ValueError(f"batch_size={batch_size} is larger than the dataset ({n} samples) "
                             f"with drop_last=True; use batch_size <= {n}")
        order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
        if self.x.device.type == "cuda":  # a pinned, non-blocking copy: Python need not wait for the GPU
            order = order.pin_memory().to(self.x.device, non_blocking=True)
        else:
            order = order.to(self.x.device)
        stop = n - n % batch_size if drop_last else n
        for start in range(0, stop, batch_size):
            yield order[start:start + batch_size]


@dataclass(frozen=True)
class DatasetInfo:
    """Registry entry: how to build a dataset and what it offers."""

    name: str
    kind: Kind
    splits: tuple[str, ...]
    embedded: bool  # True: generated in code / shipped with an installed package, works offline
    description: str
    builder: Callable[..., Dataset]
