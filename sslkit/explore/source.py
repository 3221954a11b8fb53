"""What ``sslkit explore`` shows: which model (a zoo entry or a checkpoint) on which images.

:func:`resolve` checks everything in the command's own process - names, files, the kind and shape
of the data - so a bad flag fails there with one clear message before any server starts. The result,
a :class:`Target`, is written as a small JSON file that the app's kernel reads back
(:func:`Target.load`) to load the same model (:func:`load_model`) and images (:func:`load_images`).

Errors: ``ValueError`` for values that cannot work (unknown names, data of another kind or shape;
``sslkit`` exits with status 2), ``FileNotFoundError`` for files that are not there (status 1).
"""
from __future__ import annotations

import dataclasses
import json
import os
import warnings
from dataclasses import dataclass, field
from typing import Any

ENV = "SSLKIT_EXPLORE_CONFIG"  # the app's kernel finds the Target's JSON file through this variable
DEFAULT_SAMPLES = 500          # images on the map: enough for clusters, t-SNE (exact) in seconds


@dataclass
class Target:
    """A resolved ``sslkit explore`` request: one model source and the images to show."""
    data: str                                  # dataset name
    split: str
    options: dict[str, Any] = field(default_factory=dict)  # dataset options (size=16, n=...)
    root: str = "data"                         # folder of downloaded datasets (absolute)
    samples: int = DEFAULT_SAMPLES             # the first `samples` images of the split
    model: str | None = None                   # a zoo entry ...
    zoo_dir: str | None = None                 # ... in this folder (None: the package's zoo)
    checkpoint: str | None = None              # or a checkpoint of `sslkit train` (absolute path)
    device: str | None = None                  # None: sslkit.device()

    def describe(self) -> str:
        what = f"zoo model {self.model!r}" if self.model else f"checkpoint {self.checkpoint}"
        return f"{what} on {self.samples} {self.split} images of {self.data!r}"

    def save(self, path: str | os.PathLike) -> None:
        with open(path, "w", encoding="utf-8") as f:
            json.dump(dataclasses.asdict(self), f, indent=1)

    @classmethod
    def load(cls, path: str | os.PathLike | None = None) -> Target:
        """Read a Target from ``path`` (default: the file named by ``$SSLKIT_EXPLORE_CONFIG``)."""
        path = path or os.environ.get(ENV)
        if not path:
            raise ValueError(f"no explorer configuration: ${ENV} is not set; start the app with "
                             f"`sslkit explore --model NAME` or `sslkit explore --checkpoint PATH`")
        with open(path, encoding="utf-8") as f:
            return cls(**json.load(f))


def trained_on(model: str | None = None, checkpoint: str | None = None,
               zoo_dir: str | os.PathLike | None = None) -> dict[str, Any]:
    """The model's training data: ``{"name", "options", "kind", "sample_shape" (or None)}``.

    Checks the source's name or file first: an unknown zoo entry is a ValueError, a missing
    checkpoint file a FileNotFoundError.
    """
    import sslkit
    if model is not None:
        from sslkit import zoo
        if model not in zoo.names():
            raise ValueError(f"--model {model!r} is not in the zoo; choose one of: {', '.join(zoo.names())}")
        e = zoo.entry(model)
        shape = None
        card_path = zoo.files.paths(model, zoo_dir)[1]
        if card_path.is_file():
            shape = zoo.card(model, zoo_dir).get("data", {}).get("sample_shape")
        return {"name": e.data, "options": dict(e.data_options), "kind": sslkit.data.info(e.data).kind,
                "sample_shape": shape}
    from sslkit.train import load_checkpoint
    if not os.path.isfile(checkpoint):
        raise FileNotFoundError(f"--checkpoint {checkpoint!r} does not exist (or is not a file)")
    d = load_checkpoint(checkpoint)["config"].get("data") or {}
    if not d.get("name") or d["name"] not in sslkit.data.names():
        raise ValueError(f"--checkpoint {checkpoint!r} does not say which dataset it was trained on "
                         f"(recorded: {d.get('name')!r}); it is not a checkpoint of `sslkit train`")
    return {"name": d["name"], "options": dict(d.get("options") or {}),
            "kind": d.get("kind") or sslkit.data.info(d["name"]).kind, "sample_shape": d.get("sample_shape")}


def image_models() -> list[str]:
    """Zoo entries trained on images (the ones the explorer can show)."""
    import sslkit
    from sslkit import zoo
    return [n for n in zoo.names() if sslkit.data.info(zoo.entry(n).data).kind == "image"]


def resolve(*, model: str | None = None, checkpoint: str | None = None,
            zoo_dir: str | os.PathLike | None = None, data: str | None = None,
            options: dict[str, Any] | None = None, split: str | None = None, root: str = "data",
            samples: int = DEFAULT_SAMPLES, device: str | None = None,
            notes: list[str] | None = None) -> Target:
    """Check a request and return its :class:`Target`; loads the model and the images once to do so.

    ``data`` defaults to the model's own dataset with its training options (``options`` given for
    that same dataset are added to those); ``split`` to ``test`` where the dataset has one (held-out
    images), else ``train``. The zoo's warnings (a quick build, ...) go to ``notes`` when given.
    """
    import sslkit
    if (model is None) == (checkpoint is None):
        raise ValueError("give exactly one of --model ZOO_NAME and --checkpoint PATH")
    if int(samples) < 2:
        raise ValueError(f"--samples {samples}: the neighbour explorer needs a query and a neighbour; allowed: "
                         f"2 or more")
    if device is not None:  # sslkit.device's own message names its parameter `prefer`; ours is the flag
        try:
            sslkit.device(str(device))
        except ValueError as err:
            raise ValueError(str(err).replace(f"prefer={str(device)!r}", f"--device {str(device)!r}", 1)) from None
    origin = trained_on(model, checkpoint, zoo_dir)
    source = f"--model {model!r}" if model else f"--checkpoint {checkpoint!r}"
    if origin["kind"] != "image":
        raise ValueError(f"{source} was trained on {origin['kind']} data ({origin['name']!r}); the explorer "
                         f"shows image models, e.g. --model {' | '.join(image_models())}")
    name = data or origin["name"]
    if name not in sslkit.data.names():
        raise ValueError(f"--data {name!r} is not a dataset; choose one of: {', '.join(sslkit.data.names())}")
    info = sslkit.data.info(name)
    if info.kind != "image":
        raise ValueError(f"--data {name!r} holds {info.kind} data; the model takes images like those of "
                         f"{origin['name']!r} it was trained on")
    options = {**(origin["options"] if name == origin["name"] else {}), **(options or {})}
    split = split or ("test" if "test" in info.splits else "train")
    if split not in info.splits:
        raise ValueError(f"--split {split!r} does not exist for {name!r}; choose one of: {', '.join(info.splits)}")
    target = Target(data=name, split=split, options=dict(options), root=os.path.abspath(root),
                    samples=int(samples), model=model, device=device,
                    zoo_dir=None if zoo_dir is None else os.path.abspath(zoo_dir),
                    checkpoint=None if checkpoint is None else os.path.abspath(checkpoint))
    images = load_images(target, subset=False)
    shape = origin["sample_shape"]
    if shape is not None and list(images.sample_shape) != list(shape):
        raise ValueError(f"--data {name!r}{_with(options)} gives images of shape {_shape(images.sample_shape)}, "
                         f"but {source} was trained on {_shape(shape)} images ({origin['name']!r}"
                         f"{_with(origin['options'])}); choose data of that shape (--data-option KEY=VALUE)")
    if len(images) < 2:
        raise ValueError(f"{name!r}/{split} has {len(images)} image(s); the neighbours need at least 2")
    if target.samples > len(images):
        if notes is not None:
            notes.append(f"--samples {target.samples} is more than the {len(images)} images of {name!r}/{split}; "
                         f"showing all {len(images)}")
        target.samples = len(images)
    load_model(target, notes=notes)  # files present, sha256 / format checked, weights fit the model
    return target


def _with(options: dict[str, Any]) -> str:
    return " with " + ", ".join(f"{k}={v!r}" for k, v in options.items()) if options else ""


def _shape(shape: Any) -> str:
    return "x".join(str(int(s)) for s in shape)


def load_model(target: Target, device: Any = None, notes: list[str] | None = None):
    """The target's trained method in eval mode, on ``device`` (default: the target's, else the CPU).

    A missing zoo file is a FileNotFoundError naming the build command; warnings of the zoo (a quick
    build, a stale card) are appended to ``notes`` when given, else shown as usual.
    """
    import sslkit
    from sslkit import zoo
    from sslkit.train import load_method
    dev = device if device is not None else target.device
    with warnings.catch_warnings(record=notes is not None) as caught:
        if notes is not None:
            warnings.simplefilter("always")
        if target.model is not None:
            missing = [str(p) for p in zoo.files.paths(target.model, target.zoo_dir) if not p.is_file()]
            try:
                method = zoo.load(target.model, root=target.zoo_dir)
            except zoo.ZooError as err:
                if missing:  # the files are not there: say so, and how to build them
                    raise FileNotFoundError(str(err)) from None
                raise
        else:
            if not os.path.isfile(target.checkpoint):
                raise FileNotFoundError(f"--checkpoint {target.checkpoint!r} does not exist (or is not a file)")
            method = load_method(target.checkpoint)
    if notes is not None:
        notes.extend(str(w.message) for w in caught)
    if dev is not None:
        method.to(sslkit.device(str(dev)))
    return method.eval()


def load_images(target: Target, subset: bool = True):
    """The target's dataset split with its options (the first ``target.samples`` images if ``subset``)."""
    import sslkit
    ds = sslkit.data.load(target.data, split=target.split, root=target.root, **target.options)
    return ds.subset(slice(0, target.samples)) if subset else ds
