"""`sslkit explore` in headless Chromium: start the command, open the URL it prints, and check the
app the way the notebook tests check the explorers (every widget renders with a clean console, one
control per widget changes the view, no image shown larger than its pixels), then Ctrl-C.

Two models: a tiny ViT checkpoint of `sslkit train` (three explorers: map, neighbours, attention)
and a quick build of the zoo's `simclr_digits` in a temp folder (a ConvNet: map and neighbours, and
a note instead of attention maps). Screenshots: artifacts/browser/explore-*.png.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from discover import REPO
from explore_app import start_explore
from notebook_checks import check_and_move, record_timing, voila_facts
from widget_page import CHROMIUM_ARGS, SLOW, screenshot, watch, widget_roots  # noqa: F401

pytestmark = pytest.mark.timeout(900)
RUN_TIMEOUT_S = 300  # the kernel imports torch, loads the model and embeds the images on a busy CPU


def _sslkit(*args: str, timeout: float = 600) -> None:
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="2")
    env.pop("SSLKIT_QUICK", None)  # `zoo build` refuses to run under it
    done = subprocess.run([sys.executable, "-m", "sslkit", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=timeout * SLOW)
    assert done.returncode == 0, f"sslkit {' '.join(args)}: {done.stderr[-3000:]}"


@pytest.fixture(scope="module")
def vit_checkpoint(tmp_path_factory):
    """A 2-step SimCLR run with a ViT on 16 px shapes: the smallest model with attention maps."""
    out = tmp_path_factory.mktemp("vit_run")
    _sslkit("train", "--method", "simclr", "--data", "shapes", "--data-option", "size=16", "--data-option",
            "n=160", "--backbone", "vit_tiny", "--steps", "2", "--batch-size", "16", "--out", str(out),
            "--no-progress")
    return out / "checkpoint.pt"


@pytest.fixture(scope="module")
def tiny_zoo(tmp_path_factory):
    """The zoo entry simclr_digits built for 5 steps into a temp folder (`sslkit zoo build --out`)."""
    out = tmp_path_factory.mktemp("zoo")
    _sslkit("zoo", "build", "simclr_digits", "--steps", "5", "--threads", "1", "--device", "cpu", "--out",
            str(out), "--no-progress")
    return out


@pytest.fixture
def explore_page(chromium_browser, artifacts, request):
    """start(args) -> (app, page, console log); the kernel, the command and its processes stopped after."""
    started = []

    def start(args: list[str]):
        log_path = artifacts / f"explore-{request.node.name}.log"
        app = start_explore(args, log_path, env_extra={"OMP_NUM_THREADS": "2"}, timeout=300 * SLOW)
        with open(artifacts / "servers.txt", "a") as f:
            f.write(f"sslkit explore pid={app.proc.pid} port={app.port} log={log_path}\n")
        context = chromium_browser.new_context(viewport={"width": 1280, "height": 1200}, device_scale_factor=2)
        page = context.new_page()
        page.set_default_timeout(60_000 * SLOW)
        started.append((app, context, page))
        return app, page, watch(page, app.base)

    yield start
    for app, context, page in started:
        rep = getattr(request.node, "rep_call", None)
        if rep is not None and rep.failed:
            try:
                page.screenshot(path=str(artifacts / f"FAILED-{request.node.name}.png"), full_page=True)
            except Exception:
                pass
        context.close()
        try:
            app.shutdown_kernels()  # DELETE /api/kernels/<the page's kernel>
        finally:
            status = app.stop()     # Ctrl-C
        assert status == 130, f"sslkit explore exited {status} on Ctrl-C:\n{app.log_tail()}"
        log = app.log_tail()
        assert "Traceback" not in log, log
        time.sleep(1)
        assert not app.alive(), f"processes left after Ctrl-C: {app.alive()}"


def _open_app(app, page, log, artifacts, tag: str, widgets: int) -> list[str]:
    """Open the printed URL; the app must run without a cell error and show `widgets` explorers."""
    t0 = time.monotonic()
    response = page.goto(app.url, timeout=RUN_TIMEOUT_S * 1000 * SLOW)
    assert response is not None and response.ok, f"the app answered {response and response.status}"
    facts = voila_facts(response.text())
    if facts["kernel_id"]:
        app.kernel_ids.add(facts["kernel_id"])
    assert not facts["errors"], f"a cell raised in the app: {facts['errors']}"
    assert facts["widget_outputs"] == widgets, facts
    page.wait_for_selector("#rendered_cells", state="visible", timeout=RUN_TIMEOUT_S * 1000 * SLOW)
    t1 = time.monotonic()
    scope = page.locator("#rendered_cells")
    moves = check_and_move(page, scope, widgets, log, artifacts, tag)
    record_timing(artifacts, f"sslkit explore [{tag}]", moves + log.ignored_lines(), load_and_run=t1 - t0,
                  check_and_moves=time.monotonic() - t1)
    return moves


def _pick_class(page, root, label: str) -> None:
    """The neighbour explorer's new control: choose a class; the neighbours' figure must change."""
    before = root.locator("img").get_attribute("src")
    root.locator(".widget-dropdown select").select_option(label=label)
    page.wait_for_function("([el, src]) => el.querySelector('img').src !== src",
                           arg=[root.element_handle(), before], timeout=45_000 * SLOW)


def test_explore_checkpoint_with_attention(explore_page, vit_checkpoint, artifacts):
    app, page, log = explore_page(["--checkpoint", str(vit_checkpoint), "--samples", "120"])
    assert app.api("GET", "/api/kernels/00000000-0000-0000-0000-000000000000", token=False) == 403
    moves = _open_app(app, page, log, artifacts, "explore-checkpoint", widgets=3)
    assert [m.split(":")[0] for m in moves] == ["view 0", "view 1", "view 2"]
    text = page.locator("#rendered_cells").inner_text()
    assert "trained for 2 steps" in text and "Showing the first 120 images of shapes" in text, text[:600]
    neighbours = widget_roots(page.locator("#rendered_cells"))[1]
    _pick_class(page, neighbours, "triangle")
    screenshot(page, artifacts, "explore-checkpoint-triangle")
    log.assert_clean()


def test_explore_zoo_model(explore_page, tiny_zoo, artifacts):
    app, page, log = explore_page(["--model", "simclr_digits", "--zoo-dir", str(tiny_zoo), "--samples", "150"])
    _open_app(app, page, log, artifacts, "explore-zoo", widgets=2)
    text = page.locator("#rendered_cells").inner_text()
    assert "simclr_digits (model zoo)" in text and "trained for 5 steps" in text, text[:600]
    assert "has no attention maps" in text  # a ConvNet: the attention section says why it is empty
    log.assert_clean()
