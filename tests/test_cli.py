"""The ``sslkit`` command: help, listing, clear errors (exit 2, no traceback), a tiny train + eval."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

import sslkit
from sslkit.cli import main


def fails(capsys, argv, *needles):
    """``main(argv)`` must exit with status 2 and an error message containing every needle."""
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    err = capsys.readouterr().err
    assert exit_.value.code == 2, err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in err, err
    return err


@pytest.mark.parametrize("argv", [[], ["train"], ["eval"], ["list"], ["exercises"], ["exercises", "strip"]])
def test_help_everywhere(capsys, argv):
    with pytest.raises(SystemExit) as exit_:
        main([*argv, "--help"])
    assert exit_.value.code == 0
    assert "usage: sslkit" in capsys.readouterr().out


def test_demo_arguments_go_to_the_demo(capsys, monkeypatch):
    import types
    seen = []
    monkeypatch.setitem(sys.modules, "sslkit.demo", types.SimpleNamespace(main=lambda argv: seen.append(argv)))
    assert main(["demo", "--help", "--quick"]) == 0
    assert seen == [["--help", "--quick"]]


def test_list(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in sslkit.data.names() + sslkit.method_names() + sslkit.backbones.names():
        assert f"  {name}" in out
    assert sslkit.data.info("digits").description in out
    assert main(["list", "methods"]) == 0
    out = capsys.readouterr().out
    assert "methods:" in out and "datasets:" not in out


def test_bad_values_exit_2_naming_the_flag(capsys):
    base = ["train", "--method", "simclr", "--data", "digits"]
    fails(capsys, [*base, "--steps", "0"], "--steps", "must be >= 1")
    fails(capsys, [*base, "--steps", "many"], "--steps", "whole number", "'many'")
    fails(capsys, [*base, "--steps", "2", "--lr", "-1"], "--lr", "must be > 0")
    fails(capsys, [*base, "--minutes", "nan"], "--minutes")
    fails(capsys, [*base], "stopping rule")
    fails(capsys, ["train", "--method", "nope", "--data", "digits", "--steps", "1"],
          "--method 'nope'", "simclr", "byol")
    fails(capsys, ["train", "--method", "simclr", "--data", "nope", "--steps", "1"],
          "--data 'nope'", "digits", "shapes")
    fails(capsys, [*base, "--steps", "1", "--backbone", "nope"], "--backbone 'nope'", "convnet")
    fails(capsys, [*base, "--steps", "1", "--set", "oops"], "--set", "KEY=VALUE")
    fails(capsys, [*base, "--steps", "1", "--optimizer", "adam"], "--optimizer", "invalid choice")
    fails(capsys, [*base, "--steps", "1", "--split", "nope"], "split 'nope'", "train")
    fails(capsys, ["eval", "--checkpoint", "x.pt", "--protocol", "nope"], "--protocol", "knn")
    fails(capsys, ["frobnicate"], "invalid choice")


def test_settings_errors_from_the_library_are_clean(capsys, tmp_path):
    fails(capsys, ["train", "--method", "simclr", "--data", "digits", "--steps", "1", "--device", "cpu",
                   "--out", str(tmp_path), "--set", "bogus=1"], "bogus=1", "temperature")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint at all")
    fails(capsys, ["eval", "--checkpoint", str(bad)], str(bad), "cannot be read")


def test_train_then_eval(capsys, tmp_path):
    out = tmp_path / "run"
    assert main(["train", "--method", "simclr", "--data", "digits", "--steps", "3", "--batch-size", "32",
                 "--device", "cpu", "--out", str(out), "--no-progress", "--set", "proj_dim=16",
                 "--seed", "1"]) == 0
    assert "done: 3 steps" in capsys.readouterr().out
    history = json.loads((out / "history.json").read_text())
    assert history["step"] == [1, 2, 3]
    assert (out / "checkpoint.pt").exists() and (out / "loss.png").exists()
    assert main(["eval", "--checkpoint", str(out / "checkpoint.pt"), "--device", "cpu", "--k", "5"]) == 0
    assert "kNN (k=5) accuracy on digits/test" in capsys.readouterr().out


def test_exercises_strip(capsys, tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("x = 1\n### BEGIN SOLUTION\ny = 2\n### END SOLUTION\n")]
    (tmp_path / "src").mkdir()
    nbformat.write(nb, tmp_path / "src" / "ex.ipynb")
    assert main(["exercises", "strip", str(tmp_path / "src"), str(tmp_path / "dst")]) == 0
    assert "wrote 1 student notebook" in capsys.readouterr().out
    assert "y = 2" not in (tmp_path / "dst" / "ex.ipynb").read_text()


def test_missing_optional_parts_give_a_clear_message(capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "sslkit.exercises.strip", None)  # import fails as if missing
    fails(capsys, ["exercises", "strip", "a", "b"], "notebook stripping is not available")
    monkeypatch.setitem(sys.modules, "sslkit.demo", None)
    fails(capsys, ["demo"], "the demo is not available")


def test_python_dash_m():
    res = subprocess.run([sys.executable, "-m", "sslkit", "train", "--method", "simclr"],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert "usage: sslkit train" in res.stderr and "--data" in res.stderr


@pytest.mark.slow
def test_torchrun_trains_with_ddp(tmp_path):
    torchrun = Path(sys.executable).with_name("torchrun")
    if not torchrun.exists():
        pytest.skip("torchrun not installed next to python")
    res = subprocess.run([str(torchrun), "--nproc_per_node=2", "-m", "sslkit", "train", "--method", "simclr",
                          "--data", "digits", "--steps", "2", "--batch-size", "32", "--device", "cpu",
                          "--no-progress", "--out", str(tmp_path)],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "x 2 processes" in res.stdout and res.stdout.count("done: 2 steps") == 1  # rank 0 prints
    assert json.loads((tmp_path / "history.json").read_text())["step"] == [1, 2]
