"""``sslkit doctor``: can this machine run the kit? The first command to run on a lab machine.

Prints the versions (Python, PyTorch, torchvision, sslkit and the other dependencies, each against the
range the kit supports), the device the kit would use (and whether CUDA and Apple MPS are there), where
data and the model zoo live, and whether each embedded dataset loads (timed). Returns 1 when something
essential fails (a dependency missing or outside its range, the device unusable, an embedded dataset
that does not load), else 0.
"""
from __future__ import annotations

import importlib
import importlib.metadata as metadata
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

# distribution -> module it is imported as; the kit does not work without these
CORE = {"torch": "torch", "torchvision": "torchvision", "numpy": "numpy", "scikit-learn": "sklearn",
        "matplotlib": "matplotlib", "ipywidgets": "ipywidgets", "tqdm": "tqdm"}
# for the notebooks and the apps: reported, not required
NOTEBOOK_TOOLS = ("jupyterlab", "ipykernel", "voila", "nbval")
MIN_PYTHON = (3, 10)


@dataclass
class Row:
    """One line of the report; ``ok=False`` on an essential row makes the exit status 1."""
    name: str
    value: str
    ok: bool = True
    essential: bool = True


def _supported_ranges() -> dict[str, str]:
    """distribution name -> the version range the installed sslkit declares ({} when run from source)."""
    from packaging.requirements import Requirement
    try:
        requires = metadata.requires("sslkit") or []
    except metadata.PackageNotFoundError:
        return {}
    ranges = {}
    for text in requires:
        req = Requirement(text)
        if req.marker is None or req.marker.evaluate({"extra": ""}):
            ranges[req.name.lower()] = str(req.specifier)
    return ranges


def versions() -> list[Row]:
    import sslkit
    rows = [Row("python", f"{platform.python_version()} ({sys.executable})",
                ok=sys.version_info[:2] >= MIN_PYTHON)]
    if not rows[0].ok:
        rows[0].value += f" - the kit needs Python >= {'.'.join(map(str, MIN_PYTHON))}"
    rows.append(Row("platform", platform.platform()))
    rows.append(Row("sslkit", f"{sslkit.__version__} ({Path(sslkit.__file__).parent})"))
    ranges = _supported_ranges()
    for dist, module in CORE.items():
        rows.append(_dependency(dist, module, ranges.get(dist)))
    for dist in NOTEBOOK_TOOLS:
        try:
            rows.append(Row(dist, metadata.version(dist), essential=False))
        except metadata.PackageNotFoundError:
            rows.append(Row(dist, "not installed (needed for the notebooks: pip install 'sslkit[dev]')",
                            ok=False, essential=False))
    return rows


def _dependency(dist: str, module: str, supported: str | None) -> Row:
    from packaging.version import InvalidVersion, Version
    try:
        version = metadata.version(dist)
        importlib.import_module(module)
    except metadata.PackageNotFoundError:
        return Row(dist, f"not installed - pip install '{dist}{supported or ''}'", ok=False)
    except Exception as err:  # installed but broken (a missing shared library, an ABI mismatch)
        return Row(dist, f"{version} installed, but `import {module}` fails: {type(err).__name__}: {err}", ok=False)
    if not supported:
        return Row(dist, version)
    from packaging.specifiers import SpecifierSet
    try:
        inside = Version(version) in SpecifierSet(supported)
    except InvalidVersion:
        inside = True  # a local build with an odd version string: trust it
    return Row(dist, f"{version}" + ("" if inside else f" - the kit supports {dist}{supported}"), ok=inside)


def device_rows() -> list[Row]:
    import torch

    import sslkit
    rows = []
    forced = os.environ.get("SSLKIT_DEVICE")
    try:
        dev = sslkit.device()
    except ValueError as err:
        return [Row("would use", str(err), ok=False)]
    rows.append(Row("would use", str(dev) + (f" (SSLKIT_DEVICE={forced})" if forced else "")))
    if torch.cuda.is_available():
        names = ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
        rows.append(Row("CUDA", f"available: {torch.cuda.device_count()} x [{names}], CUDA {torch.version.cuda}"))
    else:
        built = f"torch built with CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only torch"
        rows.append(Row("CUDA", f"not available ({built})", essential=False))
    mps = getattr(torch.backends, "mps", None)
    rows.append(Row("MPS", "available" if mps is not None and mps.is_available()
                    else "not available" + ("" if sys.platform == "darwin" else " (Apple silicon only)"),
                    essential=False))
    rows.append(Row("CPU threads", f"{torch.get_num_threads()} (of {os.cpu_count()} cores)"))
    rows.append(_smoke_test(dev))
    return rows


def _smoke_test(dev: Any) -> Row:
    """A matmul and its backward pass on the device: catches a broken driver that says 'available'."""
    import torch
    try:
        start = time.perf_counter()
        w = torch.randn(256, 256, device=dev, requires_grad=True)
        loss = (torch.randn(64, 256, device=dev) @ w).square().mean()
        loss.backward()
        assert w.grad is not None and bool(torch.isfinite(w.grad).all())
        return Row("compute", f"ok on {dev} ({(time.perf_counter() - start) * 1e3:.0f} ms: matmul + backward)")
    except Exception as err:
        return Row("compute", f"fails on {dev}: {type(err).__name__}: {err}", ok=False)


def zoo_dir() -> Path:
    """Where the model zoo lives: the package folder ``sslkit/zoo``."""
    import sslkit
    return Path(sslkit.__file__).parent / "zoo"


def zoo_rows() -> list[Row]:
    """The zoo's weights folder, how many entries are built, and whether their files are intact."""
    if not zoo_dir().is_dir():
        return [Row("model zoo", "not installed", essential=False)]
    try:
        from sslkit import zoo
    except Exception as err:  # the folder is there but the module does not import
        return [Row("model zoo", f"{zoo_dir()} - cannot import sslkit.zoo: {type(err).__name__}: {err}",
                    ok=False, essential=False)]
    built = zoo.names(built=True)
    rows = [Row("model zoo", f"{zoo.WEIGHTS_DIR} ({len(built)} of {len(zoo.names())} entries built"
                             + ("" if built else "; sslkit zoo build --all makes them") + ")", essential=False)]
    for name in built:
        try:
            zoo.verify(name)  # sha256 of the weights against the card
            rows.append(Row(f"  {name}", "ok (sha256 matches its card)", essential=False))
        except Exception as err:
            rows.append(Row(f"  {name}", f"{type(err).__name__}: {err}", ok=False, essential=False))
    return rows


def location_rows(root: str) -> list[Row]:
    rows = []
    data = Path(root).resolve()
    rows.append(Row("data root", f"{data} ({'exists' if data.is_dir() else 'not there yet: made on first download'};"
                                 " --root / root= choose another)", essential=False))
    rows += _real_datasets(data)
    return rows + zoo_rows()


def _real_datasets(data: Path) -> list[Row]:
    """Whether the downloadable datasets' files are under the data root (nothing is downloaded)."""
    try:
        from sslkit.data.real import _tv
        tv = _tv()
        folders = {"cifar10": tv.CIFAR10.base_folder, "stl10": tv.STL10.base_folder,
                   "mnist": os.path.join("MNIST", "raw")}  # the folders torchvision reads
    except Exception as err:
        return [Row("real datasets", f"cannot check: {type(err).__name__}: {err}", ok=False, essential=False)]
    return [Row(f"  {name}", f"found in {data / folder}" if (data / folder).is_dir()
                else f"not downloaded (sslkit.data.load({name!r}) downloads it)", essential=False)
            for name, folder in folders.items()]


def dataset_rows(names: Sequence[str] | None = None) -> list[Row]:
    """Load the train split of each embedded dataset with its defaults, timed."""
    import sslkit
    if names is None:
        names = [n for n in sslkit.data.names() if sslkit.data.info(n).embedded]
    rows = []
    for name in names:
        start = time.perf_counter()
        try:
            ds = sslkit.data.load(name, split=sslkit.data.info(name).splits[0])
            rows.append(Row(name, f"ok  {len(ds):>5} samples {tuple(ds.x.shape[1:])!s:<16} "
                                  f"{time.perf_counter() - start:5.2f} s"))
        except Exception as err:
            rows.append(Row(name, f"FAILS after {time.perf_counter() - start:.2f} s: {type(err).__name__}: {err}",
                            ok=False))
    return rows


def run(root: str = "data", datasets: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    """Print the report to ``out`` (stdout); return 0 when everything essential works, else 1."""
    out = out or sys.stdout
    sections: list[tuple[str, Callable[[], list[Row]]]] = [
        ("versions", versions), ("device", device_rows), ("where things live", lambda: location_rows(root)),
        ("embedded datasets (train split, defaults)", lambda: dataset_rows(datasets))]
    problems = []
    print("sslkit doctor", file=out)
    for title, make in sections:
        print(f"\n{title}", file=out, flush=True)
        try:
            rows = make()
        except Exception as err:  # a section that cannot even run is itself a finding
            rows = [Row("error", f"{type(err).__name__}: {err}", ok=False)]
        for row in rows:
            mark = "  " if row.ok else ("!!" if row.essential else " -")
            print(f"{mark} {row.name:<14} {row.value}", file=out, flush=True)
            if row.essential and not row.ok:
                problems.append(f"{row.name}: {row.value}")
    if problems:
        print(f"\n{len(problems)} problem(s) - the kit will not work as it is:", file=out)
        for p in problems:
            print(f"  {p}", file=out)
        return 1
    print("\neverything essential works", file=out)
    return 0
