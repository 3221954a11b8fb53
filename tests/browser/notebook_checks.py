"""The whole check of one notebook, in JupyterLab or as a Voila app (see README.md)."""
from __future__ import annotations

import json
import re
import time
from pathlib import Path

from playwright.sync_api import Locator, Page

from widget_page import (ERROR_TEXT, SLOW, WIDGET_MIME, ConsoleLog, assert_images_sharp, assert_rendered,
                         exercise_widget, list_controls, notebook_scope, open_notebook, run_all_cells,
                         screenshot, wait_all_executed, widget_roots)


def check_and_move(page: Page, scope: Locator, n_widgets: int, log: ConsoleLog, shots: Path,
                   tag: str) -> list[str]:
    """The check shared by JupyterLab and Voila: every widget renders with a clean console, then one
    control per widget is moved and must change the view (a kernel round trip)."""
    wait_rendered(scope, n_widgets, 30.0)
    screenshot(page, shots, f"{tag}-rendered")
    roots = assert_rendered(scope, n_widgets)
    log.assert_clean()
    images = assert_images_sharp(scope)
    moves = exercise_all(page, roots, shots, tag)
    screenshot(page, shots, f"{tag}-after-moves")
    assert ERROR_TEXT not in scope.inner_text(), f"'{ERROR_TEXT}' after moving controls"
    images = assert_images_sharp(scope)  # the re-rendered views too
    log.assert_clean()
    with open(shots / "timings.txt", "a") as f:  # what the sharpness check looked at
        f.write(f"{tag}: {len(images)} images no larger than their pixels, "
                f"{sum(i['in_widget'] for i in images)} of them in explorers at 2 pixels per CSS pixel\n")
    return moves


def wait_rendered(scope: Locator, expected: int, timeout_s: float) -> None:
    """Give the front end time to draw `expected` views (it renders after the kernel is idle)."""
    deadline = time.monotonic() + timeout_s * SLOW
    while time.monotonic() < deadline and len(widget_roots(scope)) < expected:
        time.sleep(0.25)


def exercise_all(page: Page, roots: list[Locator], shots: Path, prefix: str) -> list[str]:
    """Every view with controls must react to a user move; screenshot each view afterwards."""
    moves = []
    interactive = 0
    for i, root in enumerate(roots):
        if list_controls(root):
            interactive += 1
            moves.append(f"view {i}: {exercise_widget(page, root)}")
        root.scroll_into_view_if_needed()
        shots.mkdir(parents=True, exist_ok=True)
        root.screenshot(path=str(shots / f"{prefix}-view{i}.png"))
    assert interactive, "no widget view has a control a user can move"
    return moves


def record_timing(shots: Path, what: str, moves: list[str], **seconds: float) -> None:
    """Append to <artifacts>/timings.txt where the suite's minutes go and which moves worked."""
    shots.mkdir(parents=True, exist_ok=True)
    with open(shots / "timings.txt", "a") as f:
        f.write(what + "  " + "  ".join(f"{k}={v:.1f}s" for k, v in seconds.items()) + "\n")
        f.writelines(f"    {m}\n" for m in moves)


def check_lab_notebook(page: Page, lab, relpath: str, log: ConsoleLog, shots: Path,
                       run_timeout_s: float = 300.0) -> list[str]:
    """Open, Run All, then: all views render, no JS errors, each explorer reacts to a move."""
    stem = Path(relpath).stem
    t0 = time.monotonic()
    open_notebook(page, lab, relpath)
    t1 = time.monotonic()
    run_all_cells(page)
    facts = wait_all_executed(page, run_timeout_s)
    t2 = time.monotonic()
    assert facts["widget_outputs"] > 0, f"{relpath} displayed no widget"
    moves = check_and_move(page, notebook_scope(page), facts["widget_outputs"], log, shots, f"{stem}-lab")
    record_timing(shots, f"{relpath} [jupyterlab]", moves + log.ignored_lines(), open=t1 - t0, run_all=t2 - t1,
                  check_and_moves=time.monotonic() - t2)
    return moves


def voila_facts(html: str) -> dict:
    """Widget views, errors and kernel id from the Voila page as served (before its JS runs).

    Voila streams every cell output as a `<script type="application/vnd.voila.cell-output+json">`
    that its front end then consumes, so the served HTML is the kernel's side of the story.
    """
    facts = {"widget_outputs": 0, "errors": [], "kernel_id": None}
    for blob in re.findall(r'<script type="application/vnd\.voila\.cell-output\+json">(.*?)</script>',
                           html, re.DOTALL):
        out = json.loads(blob)
        if out.get("output_type") == "error":
            facts["errors"].append(f"{out.get('ename')}: {out.get('evalue')}")
        if WIDGET_MIME in out.get("data", {}):
            facts["widget_outputs"] += 1
    cfg = re.search(r'<script id="jupyter-config-data" type="application/json">(.*?)</script>',
                    html, re.DOTALL)
    if cfg:
        facts["kernel_id"] = json.loads(cfg.group(1)).get("kernelId")
    return facts


def check_voila_page(page: Page, voila, name: str, log: ConsoleLog, shots: Path,
                     run_timeout_s: float = 300.0) -> list[str]:
    """Load the Voila app (it runs the notebook), then the same checks as in JupyterLab.

    The page's kernel id is recorded on `voila.kernel_ids` so teardown can shut it down.
    """
    t0 = time.monotonic()
    response = page.goto(f"{voila.url}/?token={voila.token}", timeout=run_timeout_s * 1000 * SLOW)
    assert response is not None and response.ok, f"Voila answered {response and response.status}"
    facts = voila_facts(response.text())
    if facts["kernel_id"]:
        voila.kernel_ids.add(facts["kernel_id"])
    assert not facts["errors"], f"a cell raised in Voila: {facts['errors']}"
    assert facts["widget_outputs"] > 0, f"{name} displayed no widget in Voila"
    page.wait_for_selector("#rendered_cells", state="visible", timeout=run_timeout_s * 1000 * SLOW)
    t1 = time.monotonic()
    moves = check_and_move(page, page.locator("#rendered_cells"), facts["widget_outputs"], log, shots,
                           f"{name}-voila")
    record_timing(shots, f"{name} [voila]", moves + log.ignored_lines(), load_and_run=t1 - t0, check_and_moves=time.monotonic() - t1)
    return moves
