"""`sslkit explore` without a browser: argument handling and clear errors, the served app's security
(loopback only, token required, no open redirect, no files served), Ctrl-C, the kernel's Session
and the app notebook itself. The browser test is tests/browser/test_explore_app.py."""
from __future__ import annotations

import json
import os
import re
import select
import signal
import socket
import stat
import subprocess
import sys
import time
import types
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import nbformat
import psutil
import pytest
import torch

from sslkit.cli import main
from sslkit.explore import server as srv
from sslkit.explore.app import Session
from sslkit.explore.source import ENV, Target, resolve

REPO = Path(__file__).resolve().parents[1]
URL_RE = re.compile(r"^\s+http://127\.0\.0\.1:(\d+)/\?token=([0-9a-f]{48})$")


def fails(capsys, argv, status, *needles):
    """``main(argv)`` must end with ``status`` and one error line containing every needle, no traceback."""
    with pytest.raises(SystemExit) as exit_:
        code = main(argv)
        raise SystemExit(code)
    err = capsys.readouterr().err
    assert exit_.value.code == status, err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if not line.startswith(("usage:", " "))]
    assert len(lines) == 1, err
    for needle in needles:
        assert needle in lines[0], err
    return lines[0]


@pytest.fixture(scope="module")
def digits_ckpt(tmp_path_factory):
    out = tmp_path_factory.mktemp("digits_run")
    assert main(["train", "--method", "simclr", "--data", "digits", "--steps", "2", "--batch-size", "32",
                 "--out", str(out), "--no-progress"]) == 0
    return out / "checkpoint.pt"


@pytest.fixture(scope="module")
def vit_ckpt(tmp_path_factory):
    """One step of SimCLR with a ViT on 16 px shapes: the smallest checkpoint with attention maps."""
    out = tmp_path_factory.mktemp("vit_run")
    assert main(["train", "--method", "simclr", "--data", "shapes", "--data-option", "size=16", "--data-option",
                 "n=64", "--backbone", "vit_tiny", "--steps", "1", "--batch-size", "8", "--out", str(out),
                 "--no-progress"]) == 0
    return out / "checkpoint.pt"


@pytest.fixture(scope="module")
def tiny_zoo(tmp_path_factory):
    """The zoo entry simclr_digits built for 20 steps into a temp folder (no committed weights needed)."""
    out = tmp_path_factory.mktemp("zoo")
    assert main(["zoo", "build", "simclr_digits", "--steps", "20", "--threads", "1", "--out", str(out),
                 "--device", "cpu", "--no-progress"]) == 0
    return out


# -- arguments and errors ----------------------------------------------------------------------------
def test_one_model_source_is_required(capsys):
    fails(capsys, ["explore"], 2, "one of the arguments --model --checkpoint is required")
    fails(capsys, ["explore", "--model", "simclr_digits", "--checkpoint", "x.pt"], 2, "not allowed with")
    for port in ("0", "70000", "http"):
        fails(capsys, ["explore", "--model", "simclr_digits", "--port", port], 2, "--port")


def test_bad_names_and_data_of_the_wrong_kind_exit_2(capsys, digits_ckpt, vit_ckpt):
    fails(capsys, ["explore", "--model", "nope"], 2, "--model 'nope' is not in the zoo", "simclr_shapes")
    fails(capsys, ["explore", "--model", "cpc_waves"], 2, "signal data", "dino_shapes")
    ck = str(digits_ckpt)
    fails(capsys, ["explore", "--checkpoint", ck, "--data", "nope"], 2, "--data 'nope' is not a dataset")
    fails(capsys, ["explore", "--checkpoint", ck, "--data", "waves"], 2, "--data 'waves' holds signal data")
    fails(capsys, ["explore", "--checkpoint", ck, "--split", "val"], 2, "--split 'val'", "train, test")
    fails(capsys, ["explore", "--checkpoint", ck, "--data-option", "colour=1"], 2, "colour=1", "digits")
    fails(capsys, ["explore", "--checkpoint", str(vit_ckpt), "--data", "digits"], 2,
          "gives images of shape 1x8x8", "trained on 3x16x16 images ('shapes' with size=16")
    fails(capsys, ["explore", "--checkpoint", str(digits_ckpt.parent / "loss.png")], 2, "cannot be read")
    fails(capsys, ["explore", "--checkpoint", ck, "--samples", "1"], 2, "--samples 1", "2 or more")
    fails(capsys, ["explore", "--checkpoint", ck, "--device", "gpu0"], 2, "--device 'gpu0' is not a device",
          "cuda, mps, cpu")
    if not torch.cuda.is_available():
        fails(capsys, ["explore", "--checkpoint", ck, "--device", "cuda"], 2, "--device 'cuda'", "not available")


def test_more_samples_than_images_shows_them_all_and_says_so(digits_ckpt):
    notes: list[str] = []
    target = resolve(checkpoint=str(digits_ckpt), samples=5000, notes=notes)
    assert target.samples == 359 and notes == ["--samples 5000 is more than the 359 images of 'digits'/test; "
                                               "showing all 359"]


def test_missing_files_exit_1_in_one_line(capsys, tmp_path):
    line = fails(capsys, ["explore", "--model", "simclr_digits", "--zoo-dir", str(tmp_path)], 1,
                 f"sslkit zoo build simclr_digits --out {tmp_path}")
    assert line.startswith("sslkit explore: error: zoo entry 'simclr_digits' has no card")
    fails(capsys, ["explore", "--checkpoint", str(tmp_path / "none.pt")], 1, "does not exist")


def test_a_port_in_use_is_refused(capsys, digits_ckpt):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        fails(capsys, ["explore", "--checkpoint", str(digits_ckpt), "--port", str(port)], 2,
              f"--port {port} is already in use on 127.0.0.1")
    assert srv.port_free(port)


def test_without_voila_says_how_to_install_it(capsys, monkeypatch, digits_ckpt):
    monkeypatch.setattr(srv, "voila_available", lambda: False)
    fails(capsys, ["explore", "--checkpoint", str(digits_ckpt)], 1, "needs Voilà", "pip install 'voila>=0.5'")


def test_a_zoo_model_on_its_own_data_and_on_data_of_another_shape(capsys, tiny_zoo):
    notes: list[str] = []
    target = resolve(model="simclr_digits", zoo_dir=tiny_zoo, samples=30, notes=notes)
    assert (target.data, target.split, target.samples, target.zoo_dir) == ("digits", "test", 30, str(tiny_zoo))
    assert any("trained for 20 of its 2000 steps" in n for n in notes), notes   # a quick build says so
    s = Session(target)
    text = s.summary_text()
    card = json.loads((tiny_zoo / "simclr_digits.json").read_text())
    knn = card["metrics"]["label"]["knn"]
    assert "**simclr_digits** (model zoo)" in text and "trained for 20 steps (recipe: 2000)" in text
    assert f"model {knn['model']:.1%}, random init {knn['random_init']:.1%}, raw pixels {knn['raw']:.1%}" in text
    assert "Showing the first 30 images of `digits` (test split)" in text
    assert s.feats.shape == (30, s.model.embed(s.images.batch(torch.arange(2))).shape[1])
    # the card records the training images' shape: 3x32x32 shapes cannot go into an 8x8 digit model
    fails(capsys, ["explore", "--model", "simclr_digits", "--zoo-dir", str(tiny_zoo), "--data", "shapes"], 2,
          "--data 'shapes' gives images of shape 3x32x32", "--model 'simclr_digits' was trained on 1x8x8")


# -- how Voilà is started ------------------------------------------------------------------------------
def test_voila_listens_on_loopback_with_a_private_token(tmp_path, monkeypatch):
    cmd = srv.voila_command(tmp_path / "explorer.ipynb", 8123)
    assert "--Voila.ip=127.0.0.1" in cmd and "--port=8123" in cmd and "--Voila.port_retries=0" in cmd
    assert "--Voila.auto_token=True" in cmd and "--VoilaConfiguration.file_denylist=.*" in cmd
    assert not any("token=" in a.lower() and "auto_token" not in a.lower() for a in cmd)  # never on argv
    tokens = {srv.new_token() for _ in range(3)}
    assert len(tokens) == 3 and all(re.fullmatch(r"[0-9a-f]{48}", t) for t in tokens)
    monkeypatch.setenv("JUPYTER_TOKEN", "a-token-from-the-users-shell")  # must not replace ours
    target = Target(data="digits", split="test", checkpoint="/x.pt")
    d = srv.AppDir.create(target, "f" * 48)
    try:
        assert stat.S_IMODE(d.path.stat().st_mode) == 0o700
        assert stat.S_IMODE((d.path / "token").stat().st_mode) == 0o600
        assert (d.path / "token").read_text() == "f" * 48
        env = d.env()
        assert "JUPYTER_TOKEN" not in env and env["JUPYTER_TOKEN_FILE"] == str(d.path / "token")
        assert Target.load(env[ENV]) == target
        assert sorted(p.name for p in d.notebook.parent.iterdir()) == ["explorer.ipynb"]  # all that is served
        nb = nbformat.read(d.notebook, as_version=4)
        assert nb.metadata.kernelspec.name == srv.KERNEL
        spec = json.loads((Path(env["JUPYTER_PATH"].split(os.pathsep)[0]) / "kernels" / srv.KERNEL
                           / "kernel.json").read_text())
        assert spec["argv"][0] == sys.executable and str(REPO) in spec["env"]["PYTHONPATH"].split(os.pathsep)
    finally:
        import shutil
        shutil.rmtree(d.path)


def _start(args: list[str], timeout: float = 300.0):
    """``python -m sslkit explore ARGS`` in its own session; returns (process, port, token, stdout lines)."""
    env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, "-m", "sslkit", "explore", *args], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    lines, buf, deadline = [], b"", time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if select.select([proc.stdout], [], [], 0.5)[0]:
            buf += os.read(proc.stdout.fileno(), 4096)
            *done, buf = buf.split(b"\n")
            lines += [d.decode() for d in done]
            found = [URL_RE.match(line) for line in lines if URL_RE.match(line)]
            if found:
                return proc, int(found[0].group(1)), found[0].group(2), lines
    os.killpg(proc.pid, signal.SIGKILL)
    raise AssertionError(f"no URL printed: {lines} {proc.communicate()[1].decode()[-2000:]}")


def _get(url: str, token: str | None = None) -> tuple[int, str]:
    """(status, Location) of one request, redirects not followed."""
    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):
            return None
    opener = urllib.request.build_opener(NoRedirect)
    req = urllib.request.Request(url, headers={"Authorization": f"token {token}"} if token else {})
    try:
        with opener.open(req, timeout=30) as resp:
            return resp.status, resp.headers.get("Location", "")
    except urllib.error.HTTPError as err:
        return err.code, err.headers.get("Location", "")


def test_serves_on_loopback_with_a_token_and_stops_on_ctrl_c(digits_ckpt):
    proc, port, token, lines = _start(["--checkpoint", str(digits_ckpt), "--samples", "50"])
    try:
        assert any("on 50 test images of 'digits'" in line for line in lines), lines
        voila = [p for p in psutil.Process(proc.pid).children(recursive=True) if "voila" in " ".join(p.cmdline())]
        assert len(voila) == 1, lines
        assert token not in " ".join(voila[0].cmdline())            # not visible in `ps`
        listening = [c.laddr for c in voila[0].net_connections(kind="inet") if c.status == psutil.CONN_LISTEN]
        assert listening and all(a.ip == "127.0.0.1" for a in listening), listening
        assert [a.port for a in listening] == [port]
        folder = Path(voila[0].cmdline()[3]).parents[1]              # .../sslkit-explore-XXXX/app/explorer.ipynb
        assert folder.name.startswith("sslkit-explore-") and folder.is_dir()
        base = f"http://127.0.0.1:{port}"
        probe = "/api/kernels/00000000-0000-0000-0000-000000000000"
        assert _get(base + probe)[0] == 403 and _get(base + probe, "0" * 48)[0] == 403
        assert _get(base + probe, token)[0] == 404                   # authenticated: no such kernel
        status, location = _get(base + "/")                          # the app itself: log in first
        assert status == 302 and (location.startswith("/login") or location.startswith(base + "/login"))
        for evil in ("https://evil.example/", "//evil.example/", "/\\evil.example/", "https:/evil.example"):
            status, location = _get(f"{base}/login?next={urllib.parse.quote(evil)}&token={token}")
            assert status == 302 and urllib.parse.urlparse(location).netloc in ("", f"127.0.0.1:{port}"), \
                (evil, location)
        assert _get(f"{base}/voila/files/target.json?token={token}")[0] == 403   # no files beside the app
        os.kill(proc.pid, signal.SIGINT)                             # Ctrl-C
        out, err = proc.communicate(timeout=120)   # shutdown: SIGTERM, <= 15 s grace, SIGKILL; slack for a busy CPU
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 130, err.decode()
    assert "Traceback" not in err.decode() and "stopping (Ctrl-C)" in err.decode()
    assert not voila[0].is_running() or voila[0].status() == psutil.STATUS_ZOMBIE
    assert not folder.exists()                                       # token and config removed


# -- the kernel's side -----------------------------------------------------------------------------------
def test_target_needs_the_variable(monkeypatch, tmp_path):
    monkeypatch.delenv(ENV, raising=False)
    with pytest.raises(ValueError, match="sslkit explore --model NAME"):
        Target.load()
    t = Target(data="shapes", split="test", options={"size": 16}, model="simclr_shapes")
    t.save(tmp_path / "t.json")
    monkeypatch.setenv(ENV, str(tmp_path / "t.json"))
    assert Target.load() == t


def test_session_on_a_convnet(digits_ckpt):
    target = resolve(checkpoint=str(digits_ckpt), samples=40)
    assert (target.data, target.split, target.samples) == ("digits", "test", 40)
    s = Session(target)
    x = s.images.batch(torch.arange(40))
    assert torch.allclose(s.feats, s.model.embed(x).cpu(), atol=1e-5)  # the features of those images
    colours, names = s.colour_by()
    assert list(colours) == ["label"] and names["label"] == [str(d) for d in range(10)]
    assert not s.has_attention() and s.attention() is None
    note = s.attention_explorer()
    assert "no attention maps" in note.data and "ConvNet" in note.data
    w = s.neighbour_explorer()
    shown = sorted(set(s.images.labels.tolist()))  # the first 40 test digits happen to hold no 2
    assert w.controls["class"].options == ("all", *(str(d) for d in shown))
    text = s.summary_text()
    assert "trained for 2 steps" in text and "Showing the first 40 images of `digits` (test split)" in text


def test_session_on_a_vit_shows_attention(vit_ckpt):
    s = Session(resolve(checkpoint=str(vit_ckpt), samples=20))
    colours, names = s.colour_by()
    assert set(colours) == {"label", "colour", "size", "x", "y", "rotation", "background"}
    assert names["colour"][:2] == ["red", "green"] and names["size"] == ["low", "mid", "high"]
    assert all(int(v.max()) < len(names[k]) for k, v in colours.items())
    attn = s.attention()
    assert attn.shape[0] == 20 and attn.shape[-1] == attn.shape[-2]       # (n, heads, T, T)
    assert torch.allclose(attn.sum(-1), torch.ones(attn.shape[:-1]), atol=1e-4)
    w = s.attention_explorer()
    before = bytes(w.view.value)
    w.controls["index"].value = 3
    assert bytes(w.view.value) != before


def test_attention_comes_from_the_network_that_embeds():
    student, teacher = torch.nn.Linear(1, 1), torch.nn.Linear(1, 1)
    dino_like = types.SimpleNamespace(model=types.SimpleNamespace(backbone=student, teacher_backbone=teacher))
    assert Session.backbone(dino_like) is teacher                       # DINO evaluates its teacher
    assert Session.backbone(types.SimpleNamespace(model=types.SimpleNamespace(backbone=student))) is student


def test_the_app_notebook_runs(vit_ckpt, tmp_path, monkeypatch):
    """The shipped notebook, executed as Voilà does: no error, three explorers (widget views)."""
    from importlib import resources

    from nbclient import NotebookClient
    nb = nbformat.reads(resources.files("sslkit.explore").joinpath("explorer.ipynb").read_text("utf-8"),
                        as_version=4)
    resolve(checkpoint=str(vit_ckpt), samples=30).save(tmp_path / "target.json")
    monkeypatch.setenv(ENV, str(tmp_path / "target.json"))
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    views = [o for o in outputs if "application/vnd.jupyter.widget-view+json" in o.get("data", {})]
    assert len(views) == 3
    assert "trained for 1 step on" in outputs[0]["data"]["text/markdown"]
