"""Fixtures for the browser tests: Chromium (Debian's, installed when missing), JupyterLab and Voila.

Servers listen on 127.0.0.1 with a random token, are recorded by PID and stopped by that PID in
the fixture finaliser, even when a test fails. Kernels are shut down through the REST API after
every test. Screenshots and, on failure, server logs go to artifacts/browser/ (gitignored).
"""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from playwright.sync_api import sync_playwright

from discover import FIXTURE, FIXTURE_NAME, NOTEBOOK_ENV, NOTEBOOKS, REPO
from ensure_chromium import ensure_chromium
from lab_servers import Server, start_lab, start_voila, stop_server
from widget_page import CHROMIUM_ARGS, SLOW, watch

ARTIFACTS = REPO / "artifacts" / "browser"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, f"rep_{rep.when}", rep)  # lets fixtures know whether the test failed


def pytest_collection_modifyitems(items):
    here = Path(__file__).parent
    for item in items:
        if here in Path(item.fspath).parents:
            item.add_marker(pytest.mark.browser)


@pytest.fixture(scope="session")
def artifacts() -> Path:
    shutil.rmtree(ARTIFACTS, ignore_errors=True)  # only this run's screenshots
    ARTIFACTS.mkdir(parents=True)
    return ARTIFACTS


@pytest.fixture(scope="session")
def chromium_browser():
    try:
        executable = ensure_chromium()
    except RuntimeError as err:
        pytest.fail(str(err))
    with sync_playwright() as pw:
        # launch() gives every run a fresh temporary user-data-dir, deleted on close.
        browser = pw.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(scope="session")
def lab_root(tmp_path_factory) -> Path:
    """A temp copy of the repo's notebooks (+ the fixture notebook); `data/` linked beside it."""
    repo = tmp_path_factory.mktemp("repo")
    root = repo / "notebooks"
    if NOTEBOOKS.is_dir():
        shutil.copytree(NOTEBOOKS, root, ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    else:
        root.mkdir()
    shutil.copy(FIXTURE, root / FIXTURE_NAME)
    if (REPO / "data").is_dir():
        (repo / "data").symlink_to(REPO / "data")  # notebooks that read ../data still find it
    return root


def _record(server: Server) -> Server:
    """Note the PID in artifacts/browser/servers.txt (to clean up by hand after a hard kill)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with open(ARTIFACTS / "servers.txt", "a") as f:
        f.write(f"{server.name} pid={server.pid} port={server.port} log={server.log_path}\n")
    return server


def _keep_log(server: Server, request) -> None:
    failed = any(getattr(request.node, f"rep_{w}", None) is not None
                 and getattr(request.node, f"rep_{w}").failed for w in ("setup", "call"))
    if failed or request.scope == "session":
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        shutil.copy(server.log_path, ARTIFACTS / f"{server.name}-{server.port}.log")


@pytest.fixture(scope="session")
def lab(lab_root, tmp_path_factory, artifacts, request):
    server = _record(start_lab(lab_root, tmp_path_factory.mktemp("labhome"), env_extra=NOTEBOOK_ENV,
                               timeout=180 * SLOW))
    try:
        yield server
    finally:
        try:
            stop_server(server)
        finally:
            _keep_log(server, request)


def _new_page(browser):
    # device pixel ratio 2, like a HiDPI laptop: screenshots show whether figures are sharp there
    context = browser.new_context(viewport={"width": 1280, "height": 1200}, device_scale_factor=2)
    page = context.new_page()
    page.set_default_timeout(60_000 * SLOW)
    return context, page


def _finish_page(context, page, request, artifacts: Path) -> None:
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.failed:
        try:
            page.screenshot(path=str(artifacts / f"FAILED-{request.node.name}.png"), full_page=True)
        except Exception:  # the page may be gone; the assertion message is what matters
            pass
    context.close()


@pytest.fixture
def lab_page(chromium_browser, lab, request, artifacts):
    """(page, console log) logged into `lab`; afterwards its kernels are shut down via the API."""
    context, page = _new_page(chromium_browser)
    log = watch(page, lab.url)
    try:
        yield page, log
    finally:
        _finish_page(context, page, request, artifacts)
        shut = lab.shutdown_kernels()
        left = lab.api("GET", "/api/kernels")
        _keep_log(lab, request)
        assert not left, f"kernels still running after shutting down {shut}: {left}"


@pytest.fixture
def voila_app(chromium_browser, lab_root, tmp_path_factory, request, artifacts):
    """start(notebook name) -> (Voila server, page, console log); everything stopped afterwards."""
    started: list[tuple] = []

    def start(name: str):
        server = _record(start_voila(lab_root / name, tmp_path_factory.mktemp("voilahome"),
                                     env_extra=NOTEBOOK_ENV, timeout=180 * SLOW))
        context, page = _new_page(chromium_browser)
        started.append((server, context, page))
        return server, page, watch(page, server.url)

    try:
        yield start
    finally:
        for server, context, page in started:
            try:
                _finish_page(context, page, request, artifacts)
                known = set(server.kernel_ids)  # the page's kernel (it may have closed it on unload)
                server.shutdown_kernels()  # DELETE /api/kernels/<id>
                alive = [k for k in known if server.kernel_alive(k)]
                assert not alive, f"Voila kernels still running: {alive}"
            finally:
                server.stop()  # by PID: TERM, then KILL the group and recorded descendants
                _keep_log(server, request)
