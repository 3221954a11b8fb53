"""Every notebook starts with the install cell, and imports only the public API.

The install cell makes the kit importable where it is missing (a fresh kernel, a hosted Jupyter
service): silent when ``import sslkit`` works, ``pip install -e ..`` when the notebook sits in the
repository, otherwise an error that names the one command to run. Run here with ``exec`` against a
stand-in repository and a recorded ``pip``, so no test installs anything.
"""
from __future__ import annotations

import ast
import contextlib
import importlib
import io
import subprocess
import sys
import types
from pathlib import Path

import nbformat
import pytest

import sslkit

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))
PUBLIC_MODULES = {"sslkit"} | {f"sslkit.{name}" for name in sslkit._SUBMODULES}


def _code_cells(path: Path) -> list[str]:
    nb = nbformat.read(path, as_version=4)
    return [c.source for c in nb.cells if c.cell_type == "code"]


def _python(source: str) -> str:
    """Cell source without IPython magics / shell lines (they are not Python)."""
    return "\n".join("" if line.lstrip().startswith(("%", "!")) else line for line in source.splitlines())


INSTALL_CELL = _code_cells(NOTEBOOKS[0])[0]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_first_code_cell_is_the_install_cell(path):
    nb = nbformat.read(path, as_version=4)
    first = next(c for c in nb.cells if c.cell_type == "code")
    assert first.source == INSTALL_CELL, f"{path.name}: the first code cell is not the install cell"
    assert first.outputs == [], f"{path.name}: the install cell printed something"
    tree = ast.parse(first.source)
    guarded = tree.body[0]
    assert isinstance(guarded, ast.Try) and ast.unparse(guarded.body) == "import sslkit"
    assert [ast.unparse(h.type) for h in guarded.handlers] == ["ModuleNotFoundError"]


class _HideSslkit:
    """A meta-path finder that makes ``import sslkit`` fail as in an environment without the kit."""

    def __init__(self) -> None:
        self.hidden = True

    def find_spec(self, name, path=None, target=None):
        if self.hidden and name.split(".")[0] == "sslkit":
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


def _run_install_cell(monkeypatch, cwd: Path, installs: list, pip_fails: bool = False) -> str:
    """exec the install cell with sslkit missing; ``pip`` is recorded, not run: it writes a stand-in
    package into the repository (what ``pip install -e`` makes importable)."""
    def fake_run(cmd, **kwargs):
        installs.append(list(cmd))
        repo = Path(cmd[-1])
        (repo / "sslkit").mkdir(exist_ok=True)
        (repo / "sslkit" / "__init__.py").write_text("INSTALLED_FROM = __file__\n")
        hider.hidden = False
        return types.SimpleNamespace(returncode=1 if pip_fails else 0, stdout="", stderr="pip: no network")

    hider = _HideSslkit()
    for name in [n for n in sys.modules if n.split(".")[0] == "sslkit"]:
        monkeypatch.delitem(sys.modules, name)  # restored by monkeypatch afterwards
    monkeypatch.setattr(sys, "meta_path", [hider, *sys.meta_path])
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.setattr(subprocess, "run", fake_run)
    monkeypatch.chdir(cwd)
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out):
            exec(compile(INSTALL_CELL, "install-cell", "exec"), {})
        return out.getvalue()
    finally:
        installed = sys.modules.pop("sslkit", None)
        monkeypatch.undo()  # the real sslkit back in sys.modules
        _run_install_cell.installed = installed


def test_install_cell_is_silent_when_sslkit_imports(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # no repository around: would fail if it tried to install
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: pytest.fail("installed although sslkit imports"))
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(INSTALL_CELL, "install-cell", "exec"), {})
    assert out.getvalue() == ""


def test_install_cell_installs_from_the_repository_it_sits_in(monkeypatch, tmp_path):
    repo = tmp_path / "sslkit-main"
    (repo / "notebooks").mkdir(parents=True)
    (repo / "pyproject.toml").write_text('[project]\nname = "sslkit"\n')
    installs: list = []
    out = _run_install_cell(monkeypatch, repo / "notebooks", installs)
    assert installs == [[sys.executable, "-m", "pip", "install", "-q", "-e", str(repo)]]
    assert out == f"No module named 'sslkit': installing sslkit from {repo} (pip install -e ..; " \
                  "minutes if PyTorch is missing)\n"
    # the cell imported the freshly installed kit in the running kernel
    assert _run_install_cell.installed.INSTALLED_FROM == str(repo / "sslkit" / "__init__.py")
    assert importlib.import_module("sslkit") is sslkit


def test_install_cell_names_the_command_when_pip_fails(monkeypatch, tmp_path):
    repo = tmp_path / "kit"
    (repo / "notebooks").mkdir(parents=True)
    (repo / "pyproject.toml").write_text('[project]\nname = "sslkit"\n')
    with pytest.raises(RuntimeError, match=r"pip: no network\ninstall failed; run: .* -m pip install -e "):
        _run_install_cell(monkeypatch, repo / "notebooks", [], pip_fails=True)


@pytest.mark.parametrize("pyproject", [None, '[project]\nname = "otherkit"\n'])
def test_install_cell_outside_the_repository_says_what_to_run(monkeypatch, tmp_path, pyproject):
    (tmp_path / "notebooks").mkdir()
    if pyproject:
        (tmp_path / "pyproject.toml").write_text(pyproject)
    installs: list = []
    with pytest.raises(RuntimeError, match=r"No module named 'sslkit'.*-m pip install -e \."):
        _run_install_cell(monkeypatch, tmp_path / "notebooks", installs)
    assert installs == []


def _sslkit_imports(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "sslkit":
                    yield alias.name, None
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "sslkit":
            for alias in node.names:
                yield node.module, alias.name


def _public_names(module: types.ModuleType) -> set[str]:
    if module is sslkit:
        return set(sslkit.__all__) | set(sslkit._SUBMODULES)
    names = getattr(module, "__all__", None)
    return set(names) if names is not None else {n for n in vars(module) if not n.startswith("_")}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebooks_import_only_the_public_api(path):
    bad = []
    for source in _code_cells(path):
        tree = ast.parse(_python(source))
        for module, name in _sslkit_imports(tree):
            if module not in PUBLIC_MODULES:
                bad.append(f"{module} is not a public module")
            elif name is not None and name not in _public_names(importlib.import_module(module)):
                bad.append(f"from {module} import {name}: not in {module}'s public names")
        for node in ast.walk(tree):  # sslkit.<public>.<private module>.x reaches past the API too
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute)
                    and isinstance(node.value.value, ast.Name) and node.value.value.id == "sslkit"):
                owner = getattr(sslkit, node.value.attr)
                if isinstance(owner, types.ModuleType) and isinstance(getattr(owner, node.attr, None),
                                                                     types.ModuleType):
                    bad.append(f"sslkit.{node.value.attr}.{node.attr} is a private module")
    assert not bad, f"{path.name}: " + "; ".join(bad)


def test_public_api_check_catches_submodule_imports():
    tree = ast.parse("from sslkit.widgets.features import knn_vote_explorer\nfrom sslkit.methods import base\n")
    found = list(_sslkit_imports(tree))
    assert ("sslkit.widgets.features", "knn_vote_explorer") in found
    assert "sslkit.widgets.features" not in PUBLIC_MODULES
    assert "base" not in _public_names(importlib.import_module("sslkit.methods"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_gpu_switch_uses_any_accelerator(path):
    sources = "\n".join(_code_cells(path))
    assert 'device.type == "cuda"' not in sources
    assert 'gpu = device.type != "cpu"' in sources
