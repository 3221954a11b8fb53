"""Zoo files: ``NAME.pt`` (fp16 weights) and ``NAME.json`` (the card), checked when loaded.

The weights file is a ``torch.save`` of plain tensors and strings only, so it opens with
``torch.load(weights_only=True)`` (no code runs when reading it). The card records the file's
sha256; :func:`load` recomputes it and refuses a file that differs (a truncated download, an edit,
a stale build) with an error naming the file, both hashes and the command that rebuilds it.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import re
import tempfile
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sslkit.zoo.entries import Entry, entry

FORMAT = "sslkit-zoo"
VERSION = 1
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
FP16_MAX = 65504.0  # largest finite float16: tensors beyond it are stored in float32


class ZooError(ValueError):
    """A zoo entry's files are missing, modified, stale or do not fit the entry's model."""


def folder(root: str | os.PathLike | None = None) -> Path:
    """Where the zoo files live: ``root`` or the package's ``sslkit/zoo/weights``."""
    return WEIGHTS_DIR if root is None else Path(root)


def paths(name: str, root: str | os.PathLike | None = None) -> tuple[Path, Path]:
    """``(weights, card)`` paths of entry ``name``."""
    base = folder(root)
    return base / f"{name}.pt", base / f"{name}.json"


def build_command(name: str, root: str | os.PathLike | None = None) -> str:
    """The shell command that (re)builds entry ``name`` into ``root``."""
    return f"sslkit zoo build {name}" + ("" if root is None else f" --out {root}")


def sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# -- the model an entry describes ---------------------------------------------------------------
def create_method(e: Entry, data: Any) -> nn.Module:
    """The entry's method, freshly initialised from the global RNG (seed it first), sized by ``data``."""
    import sslkit
    from sslkit.methods.base import _backbone_kwargs, _data_facts  # data facts -> backbone kwargs

    backbone = None
    if e.backbone is not None:
        kwargs = {**_backbone_kwargs(_data_facts(data, None)), **e.backbone_options}
        backbone = sslkit.backbones.create(e.backbone, **kwargs)
        backbone.sslkit_name = e.backbone
    config = dict(e.method_config)
    if isinstance(config.get("views"), dict):
        config["views"] = sslkit.pretext.ViewRecipe(**config["views"])
    return sslkit.create(e.method, data=data, backbone=backbone, **config)


def load_data(e: Entry, split: str = "train") -> Any:
    """The entry's dataset split, with the entry's options."""
    import sslkit
    return sslkit.data.load(e.data, split, **e.data_options)


# -- writing ----------------------------------------------------------------------------------------
def compact_state(method: nn.Module) -> tuple[dict[str, torch.Tensor], list[str]]:
    """The state dict on the CPU, floating tensors in float16 (those beyond its range in float32)."""
    state, kept = {}, []
    for k, v in method.state_dict().items():
        v = v.detach().cpu()
        if v.is_floating_point():
            if v.numel() and float(v.abs().max()) > FP16_MAX:
                kept.append(k)
                v = v.float()
            else:
                v = v.half()
        state[k] = v.clone()
    return state, kept


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # package data: readable by everyone (mkstemp makes it private)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def write_weights(name: str, state: dict[str, torch.Tensor], root: str | os.PathLike | None = None,
                  float32_tensors: list[str] | tuple[str, ...] = ()) -> dict[str, Any]:
    """Write ``NAME.pt``; return the card's ``weights`` record (file, sha256, bytes, ...).

    Saved through an in-memory buffer, so the bytes depend only on the tensors (not on the file
    name): the same weights always give the same sha256.
    """
    buf = io.BytesIO()
    torch.save({"format": FORMAT, "version": VERSION, "name": name, "state_dict": state}, buf)
    path, _ = paths(name, root)
    _atomic_write(path, buf.getvalue())
    return {"file": path.name, "sha256": sha256(path), "bytes": path.stat().st_size,
            "tensors": len(state), "dtype": "float16", "float32_tensors": list(float32_tensors)}


def write_card(name: str, card: dict[str, Any], root: str | os.PathLike | None = None) -> Path:
    _, path = paths(name, root)
    text = json.dumps(card, indent=1, default=repr, allow_nan=False)
    # lists of plain values on one line each (JSON never has a raw newline inside a string)
    text = re.sub(r"\[(\n[^\[\]{}]*)\]", lambda m: "[" + re.sub(r"\n\s*", " ", m.group(1)).strip() + "]",
                  text) + "\n"
    _atomic_write(path, text.encode())
    return path


# -- reading ------------------------------------------------------------------------------------------
def card(name: str, root: str | os.PathLike | None = None) -> dict[str, Any]:
    """The card of entry ``name`` (a dict read from ``NAME.json``); ZooError when it is missing."""
    entry(name)
    _, path = paths(name, root)
    if not path.is_file():
        raise ZooError(f"zoo entry {name!r} has no card: {path} does not exist. Build it with "
                       f"`{build_command(name, root)}`")
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise ZooError(f"zoo card {path} cannot be read ({err}); rebuild it with "
                       f"`{build_command(name, root)}`") from err


def verify(name: str, root: str | os.PathLike | None = None) -> dict[str, Any]:
    """Check that ``NAME.pt`` exists and has the sha256 its card records; return the card."""
    c = card(name, root)
    path, card_path = paths(name, root)
    rebuild = build_command(name, root)
    if not path.is_file():
        raise ZooError(f"zoo entry {name!r} has no weights: {path} does not exist. Build it with "
                       f"`{rebuild}`")
    expected = c.get("weights", {}).get("sha256")
    actual = sha256(path)
    if actual != expected:
        raise ZooError(f"zoo weights {path} do not match their card {card_path}: sha256 expected "
                       f"{expected}, actual {actual}. The file was modified or belongs to another "
                       f"build; rebuild it with `{rebuild}`")
    return c


def load(name: str, device: torch.device | str | None = None, *,
         root: str | os.PathLike | None = None) -> nn.Module:
    """The trained method of zoo entry ``name``: weights loaded (sha256 checked), eval mode.

    Args:
        name: one of :func:`sslkit.zoo.names`.
        device: where to put the model (None: the CPU).
        root: the folder holding ``NAME.pt`` / ``NAME.json`` (None: the package's zoo folder).
    """
    e = entry(name)
    c = verify(name, root)
    path, _ = paths(name, root)
    rebuild = build_command(name, root)
    stored = json.loads(json.dumps(e.recipe()))
    if c.get("recipe") != stored:
        warnings.warn(f"zoo entry {name!r}: the card was built from another recipe than the one in "
                      f"sslkit/zoo/entries.py (stale files); rebuild with `{rebuild}`",
                      RuntimeWarning, stacklevel=2)
    elif c.get("steps", e.steps) < e.steps:
        warnings.warn(f"zoo entry {name!r} was trained for {c['steps']} of its {e.steps} steps (a quick "
                      f"build); rebuild with `{rebuild}` for the reference model", RuntimeWarning,
                      stacklevel=2)
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # a corrupt zip/pickle comes in many exception types
        raise ZooError(f"zoo weights {path} cannot be read ({type(err).__name__}); rebuild with "
                       f"`{rebuild}`") from err
    if not (isinstance(blob, dict) and blob.get("format") == FORMAT and blob.get("version") == VERSION):
        raise ZooError(f"{path} is not a version-{VERSION} sslkit zoo file; rebuild with `{rebuild}`")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(e.seed)  # the weights are overwritten; seeded only to be reproducible
        method = create_method(e, load_data(e))
    state = blob["state_dict"]
    own = method.state_dict()
    missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    wrong = [k for k in own if k in state and tuple(own[k].shape) != tuple(state[k].shape)]
    if missing or unexpected or wrong:
        raise ZooError(f"zoo weights {path} do not fit the model of entry {name!r} (missing "
                       f"{missing[:3]}, unexpected {unexpected[:3]}, other shapes {wrong[:3]}); the "
                       f"method or recipe changed since the build: rebuild with `{rebuild}`")
    method.load_state_dict(state)  # copies fp16 values into the model's float32 tensors
    if device is not None:
        import sslkit
        method.to(sslkit.device(str(device)))
    return method.eval()
