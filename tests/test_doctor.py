"""`sslkit doctor` and `sslkit --version`: what an instructor runs first on a lab machine."""
from __future__ import annotations

import io

import pytest

import sslkit
from sslkit import doctor
from sslkit.cli import main

FEW = ["digits", "corpus"]  # two embedded datasets keep the test quick; the CLI loads them all


def report(**kwargs) -> tuple[int, str]:
    out = io.StringIO()
    status = doctor.run(out=out, **kwargs)
    return status, out.getvalue()


def test_report_on_this_machine(tmp_path, monkeypatch):
    monkeypatch.setattr(doctor, "zoo_dir", lambda: tmp_path / "zoo")
    status, text = report(root=str(tmp_path / "data"), datasets=FEW)
    assert status == 0, text
    import torch
    import torchvision
    lines = {line.split()[0]: line for line in text.splitlines() if line.strip()}
    assert torch.__version__.split("+")[0] in lines["torch"]
    assert torchvision.__version__.split("+")[0] in lines["torchvision"]
    assert sslkit.__version__ in lines["sslkit"] and "python" in lines
    assert f"would use      {sslkit.device()}" in text
    assert "CUDA" in lines and "MPS" in lines and "compute        ok on" in text
    assert f"data root      {tmp_path / 'data'} (not there yet" in text
    assert "model zoo      not installed" in text
    for name in FEW:
        assert lines[name].split()[1] == "ok" and lines[name].rstrip().endswith(" s")
    assert "shapes" not in lines  # only the datasets asked for
    assert text.rstrip().endswith("everything essential works")


def test_zoo_folder_entries_and_their_files(tmp_path, monkeypatch):
    from sslkit import zoo
    rows = {r.name.strip(): r for r in doctor.location_rows(str(tmp_path))}
    assert rows["data root"].value.startswith(f"{tmp_path} (exists")
    built = zoo.names(built=True)
    assert rows["model zoo"].value.startswith(f"{zoo.WEIGHTS_DIR} ({len(built)} of {len(zoo.names())} entries built")
    # a built entry whose weights do not match their card is named (not essential to run the kit)
    monkeypatch.setattr(zoo, "names", lambda built=None: ["simclr_shapes"])

    def verify(name):
        raise zoo.ZooError("zoo weights simclr_shapes.pt do not match their card")

    monkeypatch.setattr(zoo, "verify", verify)
    rows = {r.name.strip(): r for r in doctor.zoo_rows()}
    assert not rows["simclr_shapes"].ok and not rows["simclr_shapes"].essential
    assert "do not match their card" in rows["simclr_shapes"].value


def test_a_dataset_that_does_not_load_fails_the_check(monkeypatch):
    real_load = sslkit.data.load

    def load(name, *args, **kwargs):
        if name == "corpus":
            raise OSError("pydoc_topics.json.gz: permission denied")
        return real_load(name, *args, **kwargs)

    monkeypatch.setattr(sslkit.data, "load", load)
    status, text = report(datasets=FEW)
    assert status == 1
    assert "!! corpus" in text and "OSError: pydoc_topics.json.gz: permission denied" in text
    assert "1 problem(s)" in text and "digits" in text.split("problem(s)")[0]


def test_a_dependency_outside_the_supported_range_fails(monkeypatch):
    monkeypatch.setattr(doctor, "_supported_ranges", lambda: {"torch": ">=99"})
    status, text = report(datasets=[])
    assert status == 1
    assert "the kit supports torch>=99" in text.split("problem(s)")[1]


def test_a_missing_dependency_says_what_to_install(monkeypatch):
    monkeypatch.setitem(doctor.CORE, "no-such-dist-xyz", "no_such_module_xyz")
    monkeypatch.setattr(doctor, "_supported_ranges", lambda: {"no-such-dist-xyz": ">=1.2"})
    status, text = report(datasets=[])
    assert status == 1 and "not installed - pip install 'no-such-dist-xyz>=1.2'" in text


def test_an_unusable_device_fails(monkeypatch):
    monkeypatch.setenv("SSLKIT_DEVICE", "tpu")
    status, text = report(datasets=[])
    assert status == 1 and "SSLKIT_DEVICE='tpu'" in text


def test_missing_notebook_tools_are_reported_but_not_essential(monkeypatch):
    monkeypatch.setattr(doctor, "NOTEBOOK_TOOLS", ("no-such-notebook-tool-xyz",))
    status, text = report(datasets=[])
    assert status == 0 and " - no-such-notebook-tool-xyz not installed" in text


def test_cli_doctor_passes_root_and_status(monkeypatch):
    seen = {}

    def fake_run(root):
        seen["root"] = root
        return 1

    monkeypatch.setattr(doctor, "run", fake_run)
    assert main(["doctor", "--root", "/somewhere"]) == 1 and seen == {"root": "/somewhere"}
    assert main(["doctor"]) == 1 and seen == {"root": "data"}


def test_cli_version(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == f"sslkit {sslkit.__version__}"
