"""Checkpoints: everything needed to continue a run exactly, in one atomically written file.

A checkpoint is a dict of tensors and plain Python only, so it loads with
``torch.load(weights_only=True)`` (no arbitrary code runs when opening a file from elsewhere):

    format   "sslkit-checkpoint" / version   what this file is
    model    the method's state_dict (backbone, heads, EMA targets, queues, centres)
    optimizer, scheduler   their state_dicts
    rng      {"torch": CPU state, "cuda": [per-device states], "data": the batch sampler's generator
              state at the start of the current epoch}
    loop     {"step": steps done, "epoch": epoch index, "batch": batches done in that epoch}
    history  History.to_dict()
    config   {"method": name, "method_config": its config dataclass as a dict, "data": {...},
              "fit": fit()'s settings}

Loading validates the whole file (keys, types, tensor shapes against the model) **before** anything
is copied into a model, so a bad file never leaves a half-loaded model behind.
"""
from __future__ import annotations

import dataclasses
import numbers
import os
import tempfile
from typing import Any

import numpy as np
import torch
from torch import nn

FORMAT = "sslkit-checkpoint"
VERSION = 1
_REQUIRED = ("format", "version", "model", "optimizer", "scheduler", "rng", "loop", "history", "config")


class CheckpointError(ValueError):
    """A checkpoint file is missing, truncated, corrupt, or does not fit the model it is loaded into."""


class CheckpointWarning(RuntimeWarning):
    """A checkpoint could not be written during ``fit`` (full disk, folder gone, ...). Training and
    its History are kept; the file named in the message was left as it was."""


def unwrap(model: nn.Module) -> nn.Module:
    """The plain method inside ``torch.compile`` (``_orig_mod``) and DDP (``module``) wrappers."""
    while True:
        if hasattr(model, "_orig_mod"):
            model = model._orig_mod
        elif isinstance(model, nn.parallel.DistributedDataParallel):
            model = model.module
        else:
            return model


def save_checkpoint(path: str | os.PathLike, method: nn.Module, optimizer: torch.optim.Optimizer | None,
                    scheduler: Any, history: Any, config: dict[str, Any], rng_states: dict[str, Any],
                    *, loop: dict[str, int] | None = None) -> str:
    """Write a checkpoint to ``path`` atomically; return the path.

    The file is written to a temporary file in the same folder and moved over ``path`` with
    ``os.replace`` (atomic on POSIX and Windows), so an interruption while saving leaves the previous
    checkpoint intact - never a truncated one.

    Args:
        method: the model (DDP / compiled wrappers are unwrapped).
        optimizer, scheduler: objects with ``state_dict()`` (None -> empty dict).
        history: a :class:`History` (or its dict).
        config: plain-Python description of the run (method name, method config, data, fit settings).
        rng_states: {"torch": ByteTensor, "cuda": [ByteTensor], "data": ByteTensor}.
        loop: {"step", "epoch", "batch"}; defaults to the history length.
    """
    path = os.fspath(path)
    hist = history.to_dict() if hasattr(history, "to_dict") else dict(history)
    state = {
        "format": FORMAT,
        "version": VERSION,
        "model": {k: v.detach().cpu() for k, v in unwrap(method).state_dict().items()},
        "optimizer": optimizer.state_dict() if optimizer is not None else {},
        "scheduler": scheduler.state_dict() if scheduler is not None else {},
        "rng": dict(rng_states),
        "loop": dict(loop) if loop is not None else {"step": len(hist.get("step", [])), "epoch": 0,
                                                      "batch": 0},
        "history": hist,
        "config": config,
    }
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".pt", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return path


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read and validate a checkpoint (tensors on the CPU). Raises :class:`CheckpointError`."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint {path!r} does not exist (or is not a file)")
    if os.path.getsize(path) == 0:
        raise CheckpointError(f"checkpoint {path!r} is empty (0 bytes)")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # zip/pickle errors of truncated or foreign files come in many types
        raise CheckpointError(f"checkpoint {path!r} cannot be read - truncated, corrupt or not a "
                              f"torch file ({type(err).__name__}: {str(err).splitlines()[0][:200]})"
                              ) from err
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"checkpoint {path!r} holds a {type(ckpt).__name__}, not an sslkit "
                              f"checkpoint dict")
    missing = [k for k in _REQUIRED if k not in ckpt]
    if missing or ckpt.get("format") != FORMAT:
        raise CheckpointError(f"{path!r} is not an sslkit checkpoint (missing {missing or 'format tag'};"
                              f" a plain state_dict? load it with torch.load instead)")
    if ckpt["version"] != VERSION:
        raise CheckpointError(f"checkpoint {path!r} has version {ckpt['version']!r}; this sslkit "
                              f"reads version {VERSION}")
    for key, kind in (("model", dict), ("optimizer", dict), ("scheduler", dict), ("rng", dict),
                      ("loop", dict), ("history", dict), ("config", dict)):
        if not isinstance(ckpt[key], kind):
            raise CheckpointError(f"checkpoint {path!r}: entry {key!r} is a {type(ckpt[key]).__name__},"
                                  f" expected a {kind.__name__}")
    bad = [k for k, v in ckpt["model"].items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(f"checkpoint {path!r}: model entries {bad[:5]} are not tensors")
    ckpt["path"] = path
    return ckpt


def check_model_state(ckpt: dict[str, Any], method: nn.Module) -> None:
    """Raise :class:`CheckpointError` unless the saved weights fit ``method`` key for key, shape for shape."""
    path = ckpt.get("path", "<checkpoint>")
    saved, own = ckpt["model"], unwrap(method).state_dict()
    missing, unexpected = sorted(set(own) - set(saved)), sorted(set(saved) - set(own))
    if missing or unexpected:
        raise CheckpointError(f"checkpoint {path!r} does not match this model: missing keys "
                              f"{missing[:5]}{'...' if len(missing) > 5 else ''}, unexpected keys "
                              f"{unexpected[:5]}{'...' if len(unexpected) > 5 else ''} (was it saved "
                              f"from another method/backbone? saved: {ckpt['config'].get('method')!r})")
    wrong = [(k, tuple(saved[k].shape), tuple(v.shape)) for k, v in own.items()
             if tuple(saved[k].shape) != tuple(v.shape)]
    if wrong:
        k, s, o = wrong[0]
        raise CheckpointError(f"checkpoint {path!r} does not match this model: {len(wrong)} tensors "
                              f"have other shapes, e.g. {k!r} is {s} in the file but {o} in the model")


def check_optimizer_state(ckpt: dict[str, Any], optimizer: torch.optim.Optimizer) -> None:
    """Raise :class:`CheckpointError` unless the saved optimiser state fits ``optimizer``'s params."""
    path = ckpt.get("path", "<checkpoint>")
    saved = ckpt["optimizer"]
    groups = saved.get("param_groups")
    if not isinstance(groups, list) or not isinstance(saved.get("state"), dict):
        raise CheckpointError(f"checkpoint {path!r}: optimizer state is malformed")
    own = optimizer.param_groups
    if [len(g["params"]) for g in groups] != [len(g["params"]) for g in own]:
        raise CheckpointError(f"checkpoint {path!r}: optimizer has parameter groups of sizes "
                              f"{[len(g['params']) for g in groups]} in the file but "
                              f"{[len(g['params']) for g in own]} here (another model or optimizer?)")
    params = [p for g in own for p in g["params"]]
    ids = [i for g in groups for i in g["params"]]
    for i, p in zip(ids, params):
        for name, value in saved["state"].get(i, {}).items():
            if isinstance(value, torch.Tensor) and value.ndim > 0 and value.shape != p.shape:
                raise CheckpointError(f"checkpoint {path!r}: optimizer state {name!r} of parameter {i}"
                                      f" has shape {tuple(value.shape)}, the parameter {tuple(p.shape)}")


def data_record(data: Any) -> dict[str, Any]:
    """What a checkpoint records about the training data (compared on resume)."""
    meta = getattr(data, "meta", {}) or {}
    return {"name": getattr(data, "name", None), "split": getattr(data, "split", None),
            "kind": getattr(data, "kind", None), "sample_shape": list(data.sample_shape),
            "options": _plain(dict(meta.get("options", {}))), "samples": len(data),
            "seed": meta.get("seed")}


def run_config(method: nn.Module, data: Any, fit_config: dict) -> dict[str, Any]:
    """Plain-Python description of the run, enough for ``load_method`` to rebuild the method."""
    method = unwrap(method)
    cfg = getattr(method, "config", None)
    method_config = dataclasses.asdict(cfg) if dataclasses.is_dataclass(cfg) else {}
    backbone = getattr(method, "backbone_name", None)
    config = {
        "method": getattr(method, "name", type(method).__name__),
        "method_config": _plain(method_config, tuples=True),
        "backbone": backbone if isinstance(backbone, str) else None,
        "data": data_record(data),
        "fit": _plain(fit_config),
    }
    recipe = getattr(method, "view_recipe", None)
    if recipe is not None:  # the augmentations the method trains with, as the run's config shows them
        from sslkit.pretext.recipes import to_config
        config["view_recipe"] = _plain(to_config(recipe))
    return config


def check_run(ckpt: dict[str, Any], method: nn.Module, data: Any, batch_size: int) -> None:
    """Refuse to resume ``ckpt`` with another method, other data or another batch size, or from a
    file whose loop state is malformed - before anything is loaded."""
    from sslkit.train.history import History

    path, config = ckpt["path"], ckpt["config"]
    saved_name, name = config.get("method"), getattr(unwrap(method), "name", None)
    if saved_name is not None and name is not None and saved_name != name:
        raise CheckpointError(f"checkpoint {path!r} holds a {saved_name!r} run; cannot resume a "
                              f"{name!r} method from it")
    saved, now = config.get("data") or {}, data_record(data)
    for key in ("name", "split", "kind", "sample_shape", "options", "samples", "seed"):
        if saved.get(key) is not None and now.get(key) is not None and _plain(saved[key]) != now[key]:
            raise ValueError(f"resume={path!r} was trained on other data: {key} {saved[key]!r} in the "
                             f"checkpoint, {now[key]!r} here (data {_describe_data(saved)} vs "
                             f"{_describe_data(now)}); resume with the data it was trained on")
    saved_bs = config.get("fit", {}).get("batch_size")
    if saved_bs is not None and saved_bs != batch_size:
        raise ValueError(f"batch_size={batch_size} but checkpoint {path!r} was trained with "
                         f"batch_size={saved_bs}; resume with the same batch size")
    loop, rng = ckpt["loop"], ckpt["rng"]
    for key in ("step", "epoch", "batch"):
        if not isinstance(loop.get(key), int):
            raise CheckpointError(f"checkpoint {path!r}: loop[{key!r}] is missing or not an int")
    for key in ("torch", "data"):
        if not isinstance(rng.get(key), torch.Tensor):
            raise CheckpointError(f"checkpoint {path!r}: rng[{key!r}] is missing or not a tensor")
    for key in ("base_lr", "warmup", "final_ratio"):
        if key not in ckpt["scheduler"]:
            raise CheckpointError(f"checkpoint {path!r}: scheduler state lacks {key!r}")
    try:
        History.from_dict(ckpt["history"])
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"checkpoint {path!r}: history is malformed ({err})") from err


def _describe_data(d: dict[str, Any]) -> str:
    options = ", ".join(f"{k}={v!r}" for k, v in (d.get("options") or {}).items())
    return (f"{d.get('name')!r}/{d.get('split')} ({d.get('kind')}, {d.get('samples')} samples of shape "
            f"{tuple(d.get('sample_shape') or ())}{', ' + options if options else ''})")


def _plain(value: Any, tuples: bool = False) -> Any:
    """Dicts, lists, strings, numbers and None only - what ``torch.load(weights_only=True)`` reads.
    NumPy numbers become Python numbers, anything else (a callable, a module) its ``str``; tuples
    become lists unless ``tuples`` (lists compare equal after a JSON or CLI round trip)."""
    if isinstance(value, dict):
        return {str(k): _plain(v, tuples) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        items = [_plain(v, tuples) for v in value]
        return tuple(items) if tuples and isinstance(value, tuple) else items
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    return str(value)


def load_method(path: str | os.PathLike, data: Any = None, device: torch.device | str | None = None
                ) -> nn.Module:
    """Rebuild the trained method saved in checkpoint ``path`` (for evaluation).

    The method is recreated with ``sslkit.create(name, data=..., backbone=..., **method_config)``
    from the checkpoint's config and its weights are loaded (validated first). ``data`` is only used
    to size the model (channels, image size, vocabulary); by default the dataset named in the
    checkpoint is loaded with its default options.
    """
    import sslkit

    ckpt = load_checkpoint(path)
    cfg = ckpt["config"]
    name = cfg.get("method")
    if not isinstance(name, str):
        raise CheckpointError(f"checkpoint {ckpt['path']!r} does not record which method it holds")
    if data is None and cfg.get("data", {}).get("name"):
        d = cfg["data"]
        data = sslkit.data.load(d["name"], split=d.get("split", "train"), **d.get("options", {}))
        if d.get("sample_shape") is not None and list(data.sample_shape) != list(d["sample_shape"]):
            raise CheckpointError(f"checkpoint {ckpt['path']!r} was trained on {d['name']!r} samples of "
                                  f"shape {tuple(d['sample_shape'])}, but loading {d['name']!r} with "
                                  f"default options gives {tuple(data.sample_shape)}; pass data= "
                                  f"(the dataset loaded with the options used for training)")
    method_config = dict(cfg.get("method_config") or {})
    backbone = cfg.get("backbone")
    method = sslkit.create(name, data=data, backbone=backbone, **method_config)
    check_model_state(ckpt, method)
    unwrap(method).load_state_dict(ckpt["model"])
    if device is not None:
        method.to(device)
    return method.eval()
