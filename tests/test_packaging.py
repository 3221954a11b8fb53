"""The set-up files agree: pyproject.toml states the supported ranges, requirements.lock pins one
tested set inside them (what `make` installs), environment.yml gives conda users the same."""
import importlib.metadata
import re
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the dev extra installs tomli
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
LOCK_ENV = {"python_version": "3.11", "sys_platform": "linux", "platform_system": "Linux",
            "platform_machine": "x86_64"}  # where the lock was made (its header says so)


def _name(req: str) -> str:
    return canonicalize_name(re.split(r"[<>=!~\[ ;]", req.strip(), maxsplit=1)[0])


def _project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _pyproject() -> dict[str, str]:
    meta = _project()
    reqs = list(meta["dependencies"]) + list(meta["optional-dependencies"]["dev"])
    return {_name(r): r.replace(" ", "") for r in reqs}


def _environment_pip() -> list[str]:
    text = (ROOT / "environment.yml").read_text()
    pip = text.split("- pip:", 1)[1]
    return [m.group(1).strip() for m in re.finditer(r"^\s*-\s+(\S.*)$", pip, re.M)]


def _environment() -> dict[str, str]:
    return {_name(r): r.replace(" ", "") for r in _environment_pip() if not r.startswith("-")}


def _lock() -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        m = re.fullmatch(r"([A-Za-z0-9_.\-]+)==([A-Za-z0-9_.+\-]+)", line.strip())
        assert m, f"requirements.lock: {line!r} is not an exact pin NAME==VERSION"
        name = canonicalize_name(m.group(1))
        assert name not in pins, f"requirements.lock pins {name} twice"
        pins[name] = m.group(2)
    return pins


def test_environment_yml_matches_pyproject():
    assert _environment() == _pyproject()


def test_environment_yml_installs_with_the_lock():
    pip = _environment_pip()
    assert "-c requirements.lock" in pip and "-e ." in pip
    assert pip.index("-c requirements.lock") < pip.index("-e .")


def test_supported_ranges_reach_back_and_include_the_lock():
    deps = {_name(r): Requirement(r) for r in _project()["dependencies"]}
    lock = _lock()
    assert lock["torch"] == "2.14.1" and lock["torchvision"] == "0.29.1"
    # ranges, not pins: a course machine's or a hosted notebook's older torch keeps working
    assert "2.4" in deps["torch"].specifier and "2.14.1" in deps["torch"].specifier
    assert "0.19" in deps["torchvision"].specifier and "0.29.1" in deps["torchvision"].specifier
    assert not any(s.operator == "==" for r in deps.values() for s in r.specifier)
    assert _project()["requires-python"] == ">=3.10"


def test_lock_pins_every_dependency_inside_its_range():
    lock = _lock()
    meta = _project()
    for text in list(meta["dependencies"]) + list(meta["optional-dependencies"]["dev"]):
        req = Requirement(text)
        if req.marker is not None and not req.marker.evaluate({**LOCK_ENV, "extra": "dev"}):
            continue  # e.g. tomli, only for Python 3.10
        name = canonicalize_name(req.name)
        assert name in lock, f"requirements.lock has no pin for {name}"
        assert Version(lock[name]) in req.specifier, f"lock pins {name}=={lock[name]}, outside {req}"


def test_makefile_installs_the_lock_and_keys_the_stamp_on_it():
    make = (ROOT / "Makefile").read_text()
    assert re.search(r"^LOCK := requirements\.lock$", make, re.M)
    hash_line = re.search(r"^REQ_HASH := .*$", make, re.M).group(0)
    assert "pyproject.toml" in hash_line and "$(LOCK)" in hash_line
    installs = re.findall(r"pip install .*", make.split("\nlock:")[0])
    assert installs and all("-c $(LOCK)" in line for line in installs)


def test_environment_yml_python_version():
    assert re.search(r"^\s*-\s*python=3\.11\s*$", (ROOT / "environment.yml").read_text(), re.M)
    header = [line for line in (ROOT / "requirements.lock").read_text().splitlines() if line.startswith("#")]
    assert any("Python 3.11" in line for line in header)  # the Python the lock was made with


@pytest.mark.skipif(Path(sys.prefix).resolve() != (ROOT / ".venv").resolve(),
                    reason="only in the environment `make` built from the lock")
def test_make_venv_has_the_locked_versions():
    lock = _lock()
    for dist in importlib.metadata.distributions():
        name = canonicalize_name(dist.metadata["Name"])
        if name != "sslkit":
            assert lock.get(name) == dist.version, f"{name} {dist.version} installed, lock says {lock.get(name)}"


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    head = "\n".join(readme.splitlines()[:30])
    assert "make demo" in head and "make test" in head
    assert "make test" in (ROOT / ".ci" / "run").read_text()
