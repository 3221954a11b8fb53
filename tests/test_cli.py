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


# -- known errors: one clear line, no traceback, non-zero status (issue 14.9) ------------------------------
@pytest.mark.parametrize("error", [
    lambda: sslkit.data.DatasetUnavailable("dataset 'cifar10' is not available: no files\n  Looked in: x"),
    lambda: PermissionError(13, "Permission denied", "/data/readonly"),
    lambda: FileExistsError(17, "File exists", "runs/x"),
    lambda: OSError(28, "No space left on device"),
])
def test_known_errors_exit_1_with_one_line(capsys, monkeypatch, tmp_path, error):
    def fail(*args, **kwargs):
        raise error()

    monkeypatch.setattr(sslkit.data, "load", fail)
    status = main(["train", "--method", "simclr", "--data", "digits", "--steps", "1",
                   "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert status == 1 and "Traceback" not in err
    first = err.strip().splitlines()[0]
    assert first.startswith("sslkit train: error: ") and len(first) > len("sslkit train: error: ") + 5


def test_unusable_outputs_and_checkpoints_exit_2_before_training(capsys, tmp_path, monkeypatch):
    (tmp_path / "file").write_text("x")
    calls = []
    monkeypatch.setattr(sslkit.data, "load", lambda *a, **k: calls.append(a))
    base = ["train", "--method", "simclr", "--data", "digits", "--steps", "1"]
    fails(capsys, [*base, "--out", str(tmp_path / "file")], "--out=", "is an existing file")
    fails(capsys, [*base, "--out", str(tmp_path / "file" / "run")], "cannot be written", "regular file")
    assert calls == []  # found before any data was loaded
    monkeypatch.undo()
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"\x00" * 64)
    fails(capsys, [*base, "--device", "cpu", "--out", str(tmp_path / "run"), "--resume", str(garbage)],
          str(garbage), "cannot be read")


def test_failed_checkpoint_write_exits_1_naming_the_file(capsys, tmp_path, monkeypatch):
    import torch

    def full(obj, f, *args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", full)
    from sslkit.train import CheckpointWarning

    out = tmp_path / "run"
    with pytest.warns(CheckpointWarning, match="No space left"):
        status = main(["train", "--method", "simclr", "--data", "digits", "--steps", "2", "--batch-size",
                       "32", "--device", "cpu", "--out", str(out), "--no-progress", "--set", "proj_dim=16"])
    captured = capsys.readouterr()
    assert status == 1 and "done: 2 steps" in captured.out
    assert "not written" in captured.err and str(out / "checkpoint.pt") in captured.err
    assert json.loads((out / "history.json").read_text())["step"] == [1, 2]  # the History is kept


def test_ctrl_c_during_train_saves_and_exits_130(tmp_path):
    import signal
    import time

    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "sslkit", "train", "--method", "simclr", "--data", "digits",
                             "--steps", "100000", "--batch-size", "32", "--device", "cpu", "--no-progress",
                             "--out", str(out), "--set", "proj_dim=16", "--checkpoint-every", "2"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not (out / "checkpoint.pt").exists() and time.monotonic() < deadline:
            time.sleep(0.2)  # training has started once the first periodic checkpoint exists
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 130, stderr[-2000:]
    assert "Traceback" not in stderr and "interrupted:" in stdout
    history = json.loads((out / "history.json").read_text())
    assert history["interrupted"] and len(history["step"]) >= 1
    from sslkit.train import load_checkpoint
    assert load_checkpoint(out / "checkpoint.pt")["loop"]["step"] == history["step"][-1]
