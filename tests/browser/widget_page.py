"""Drive JupyterLab / Voila pages in Chromium and check ipywidgets as a student would use them.

The checks, shared by the JupyterLab and the Voila tests:
- `ConsoleLog`: every console error and uncaught page error, minus an explicit allowlist.
- `widget_roots`: the top-level rendered widget views (one per `display(widget)`), tagged
  `data-sslkit-root=<i>` so Playwright locators can address them.
- `assert_rendered`: as many rendered views as the kernel displayed, each with real widget DOM
  and no "Error displaying widget".
- `exercise_widget`: move the controls of one view the way a user would (drag a slider handle,
  arrow keys, type into a text box, click a toggle, pick a dropdown option, click a button) until
  what the view shows (text outside the controls, or an image `src`) changes.
- `assert_images_sharp`: no image is shown larger than its own pixels, and the explorers' images
  carry 2 pixels per CSS pixel (pages are opened at device pixel ratio 2, like a HiDPI laptop).
"""
from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

from playwright.sync_api import Locator, Page

# Chromium flags: no sandbox (CI runs as root), no GPU, and no background traffic (Chromium
# otherwise keeps dialling Google services, which this offline machine refuses).
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage"]
# Multiply every wait by this (e.g. SSLKIT_BROWSER_SLOW=3 on a busy 2-core machine).
SLOW = float(os.environ.get("SSLKIT_BROWSER_SLOW", "1"))
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
# A rendered view is a `.jupyter-widgets` element placed directly in an output area (JupyterLab
# and Voila alike); without the widget manager the output area shows the text/plain repr instead.
ROOT_SELECTOR = ".jp-OutputArea-output > .jupyter-widgets"
ERROR_TEXT = "Error displaying widget"

# Console noise that is not a widget failure: (regex on the message, regex on the source URL, why).
# Both must match. Nothing else is ignored (JupyterLab itself logs no console error here).
CONSOLE_ALLOWLIST = [
    (r"^Failed to load resource: net::ERR_FAILED$", r"^https://cdn\.jsdelivr\.net/npm/@fortawesome/",
     "Voila's lab template links font-awesome CSS from a CDN; block_external_requests aborts "
     "it (no network here), which only costs the button icons"),
]


@dataclass
class ConsoleLog:
    """Collects console errors and page errors of one page."""
    origin: str
    errors: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)

    def attach(self, page: Page) -> "ConsoleLog":
        page.on("console", self._on_console)
        page.on("pageerror", lambda err: self.errors.append(f"pageerror: {err}"))
        return self

    def _on_console(self, msg) -> None:
        if msg.type != "error":
            return
        text, url = msg.text, (msg.location or {}).get("url", "")
        if any(re.search(pat, text) and re.search(src, url) for pat, src, _ in CONSOLE_ALLOWLIST):
            self.ignored.append(f"{text} @ {url}")
        else:
            self.errors.append(f"console.error: {text} @ {url}")

    def ignored_lines(self) -> list[str]:
        return [f"allowed console noise: {m}" for m in self.ignored]

    def assert_clean(self) -> None:
        assert not self.errors, "JavaScript errors in the page:\n" + "\n".join(self.errors)


def watch(page: Page, origin: str) -> ConsoleLog:
    """Start collecting console errors and block traffic that leaves `origin`."""
    block_external_requests(page, origin)
    return ConsoleLog(origin).attach(page)


def block_external_requests(page: Page, origin: str) -> None:
    """Abort every request that leaves the test server (e.g. Voila's CDN font-awesome CSS)."""
    host = urlparse(origin).netloc

    def route(r):
        if urlparse(r.request.url).netloc in ("", host) or r.request.url.startswith(("data:", "blob:")):
            r.continue_()
        else:
            r.abort()
    page.route("**/*", route)


# ---------------------------------------------------------------- JupyterLab


def open_notebook(page: Page, lab, relpath: str) -> None:
    """Log in with the token, open `relpath` and wait until its kernel is idle."""
    page.goto(f"{lab.url}/lab/tree/{relpath}?token={lab.token}&reset", timeout=120_000 * SLOW)
    page.wait_for_function(
        """(name) => {
            const app = window.jupyterapp; if (!app) return false;
            const w = app.shell.currentWidget;
            if (!w || !w.context || !w.context.path.endsWith(name) || !w.sessionContext) return false;
            const k = w.sessionContext.session && w.sessionContext.session.kernel;
            return !!k && k.status === 'idle' && w.content.widgets.length > 0;
        }""", arg=Path(relpath).name, timeout=180_000 * SLOW, polling=250)


def run_all_cells(page: Page) -> None:
    """Run > Run All Cells through the menu bar, like a student."""
    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
    page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$")).click()


def wait_all_executed(page: Page, timeout_s: float) -> dict:
    """Wait until every code cell ran and the kernel is idle; fail on the first error output.

    Returns notebook facts read from the model: {"cells", "widget_outputs", "errors"}.
    """
    js = """() => {
        const w = window.jupyterapp.shell.currentWidget;
        const k = w.sessionContext.session && w.sessionContext.session.kernel;
        const facts = {cells: 0, pending: 0, widget_outputs: 0, errors: [], status: k ? k.status : 'none'};
        for (const cell of w.content.widgets) {
            if (cell.model.type !== 'code') continue;
            facts.cells += 1;
            if (cell.model.executionCount === null || cell.promptNode.textContent.includes('*')) facts.pending += 1;
            for (const out of cell.model.outputs.toJSON()) {
                if (out.output_type === 'error') facts.errors.push(out.ename + ': ' + out.evalue);
                if (out.data && out.data['%s']) facts.widget_outputs += 1;
            }
        }
        return facts;
    }""" % WIDGET_MIME
    deadline, idle_since, facts = time.monotonic() + timeout_s * SLOW, None, {}
    while time.monotonic() < deadline:
        facts = page.evaluate(js)
        if facts["errors"]:
            raise AssertionError(f"a cell raised: {facts['errors']}")
        done = facts["pending"] == 0 and facts["status"] == "idle"
        idle_since = (idle_since or time.monotonic()) if done else None
        if done and time.monotonic() - idle_since > 1.0:  # idle for a second: comm traffic settled
            return facts
        time.sleep(0.25)
    raise TimeoutError(f"cells still running after {timeout_s * SLOW:.0f} s: {facts}")


def notebook_scope(page: Page) -> Locator:
    return page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook")


# ---------------------------------------------------------------- widgets (Lab and Voila)


def widget_roots(scope: Locator) -> list[Locator]:
    """Top-level widget views under `scope` (nested ones, e.g. inside an Output, excluded)."""
    n = scope.evaluate(
        """(el, sel) => {
            const roots = [...el.querySelectorAll(sel)].filter(
                r => !r.parentElement.closest('.jupyter-widgets'));
            roots.forEach((r, i) => r.setAttribute('data-sslkit-root', String(i)));
            return roots.length;
        }""", ROOT_SELECTOR)
    return [scope.locator(f'[data-sslkit-root="{i}"]') for i in range(n)]


def assert_rendered(scope: Locator, expected: int | None) -> list[Locator]:
    """Every displayed widget rendered: the right number of views, real DOM, no error text."""
    text = scope.inner_text()
    assert ERROR_TEXT not in text, f"'{ERROR_TEXT}' shown:\n{_around(text, ERROR_TEXT)}"
    roots = widget_roots(scope)
    if expected is not None:
        assert len(roots) == expected, (
            f"{expected} widget views displayed by the kernel but {len(roots)} rendered; "
            "is the @jupyter-widgets/jupyterlab-manager extension loaded?")
    assert roots, "no rendered widget view found"
    for i, root in enumerate(roots):
        box = root.bounding_box()
        assert box and box["width"] > 0 and box["height"] > 0, f"widget view {i} has no size"
    return roots


# Every image shown on the page: its size there (CSS pixels) and its own pixels.
IMAGES_JS = """(el) => [...el.querySelectorAll('img')]
    .filter(i => i.complete && i.naturalWidth > 0 && i.getClientRects().length > 0)
    .map(i => { const r = i.getBoundingClientRect();
                return {width: r.width, height: r.height, natural_width: i.naturalWidth,
                        natural_height: i.naturalHeight, in_widget: !!i.closest('.jupyter-widgets'),
                        src: i.src.slice(0, 48)}; })"""
# Explorer figures are rendered with 2 PNG pixels per CSS pixel (sslkit.widgets.render.SCALE):
# sharp at device pixel ratio 2. A little slack for rounding to whole pixels.
WIDGET_IMAGE_PIXELS_PER_CSS_PIXEL = 1.95


def assert_images_sharp(scope: Locator) -> list[dict]:
    """No image is shown wider or taller than its natural pixel size (the page never stretches a
    figure into a blur), and the explorers' images have ~2 pixels per CSS pixel (sharp at DPR 2)."""
    images = scope.evaluate(IMAGES_JS)
    stretched = [i for i in images if i["width"] > i["natural_width"] + 0.5
                 or i["height"] > i["natural_height"] + 0.5]
    assert not stretched, "images shown larger than their pixels (blurred by the page): " + "; ".join(
        f"{i['natural_width']}x{i['natural_height']} px shown at {i['width']:.0f}x{i['height']:.0f} "
        f"({i['src']}...)" for i in stretched)
    soft = [i for i in images if i["in_widget"]
            and i["natural_width"] < WIDGET_IMAGE_PIXELS_PER_CSS_PIXEL * i["width"]]
    assert not soft, "explorer images with fewer than 2 pixels per CSS pixel (soft at DPR 2): " + "; ".join(
        f"{i['natural_width']} px shown {i['width']:.0f} px wide" for i in soft)
    return images


def _around(text: str, needle: str, width: int = 300) -> str:
    i = text.find(needle)
    return text[max(0, i - width): i + width]


# What a view "shows": text outside the controls and every image / canvas source.
SNAPSHOT_JS = """(root) => {
    const clone = root.cloneNode(true);
    // drop the controls themselves: their own echo of a move is not a kernel round trip
    clone.querySelectorAll('.widget-readout, input, select, textarea, button, .noUi-target, label')
        .forEach(e => e.remove());
    const imgs = [...root.querySelectorAll('img')].map(i => i.src);
    const canvases = [...root.querySelectorAll('canvas')].map(c => { try { return c.toDataURL().length + ':' + c.toDataURL().slice(-64); } catch (e) { return ''; } });
    return clone.textContent.replace(/\\s+/g, ' ').trim() + '\\n' + imgs.join('\\n') + '\\n' + canvases.join('\\n');
}"""

# Controls, in the order they are tried (cheap, reversible moves first; buttons last because a
# button may start real work).
CONTROLS = [
    ("slider", ".widget-slider:not(.mod-disabled) .noUi-handle"),
    ("dropdown", ".widget-dropdown select:not([disabled])"),
    ("toggle", "button.widget-toggle-button:not([disabled]):not(.widget-toggle-buttons *)"),
    ("toggles", ".widget-toggle-buttons button:not([disabled]):not(.mod-active)"),
    ("checkbox", ".widget-checkbox input[type=checkbox]:not([disabled])"),
    ("radio", ".widget-radio-box input[type=radio]:not([disabled])"),
    ("text", ".widget-text input:not([disabled]), .widget-textarea textarea:not([disabled])"),
    ("button", "button.widget-button:not([disabled])"),
]


def list_controls(root: Locator) -> list[tuple[str, Locator]]:
    found = []
    for kind, sel in CONTROLS:
        loc = root.locator(sel)
        found += [(kind, loc.nth(i)) for i in range(loc.count()) if loc.nth(i).is_visible()]
    return found


def _drag_slider(page: Page, handle: Locator) -> None:
    """Press the mouse on the handle and drag it a quarter of the track along its axis."""
    track = handle.locator("xpath=ancestor::*[contains(@class,'noUi-target')][1]")
    hb, tb = handle.bounding_box(), track.bounding_box()
    x, y = hb["x"] + hb["width"] / 2, hb["y"] + hb["height"] / 2
    vertical = tb["height"] > tb["width"]
    if vertical:
        dy = tb["height"] / 4 * (1 if y < tb["y"] + tb["height"] / 2 else -1)
        target = (x, y + dy)
    else:
        dx = tb["width"] / 4 * (1 if x < tb["x"] + tb["width"] / 2 else -1)
        target = (x + dx, y)
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(*target, steps=8)
    page.mouse.up()


def _readout(handle: Locator) -> str:
    return handle.evaluate(
        "h => { const s = h.closest('.widget-slider'); const r = s && s.querySelector('.widget-readout');"
        " return (r ? r.textContent : '') + '|' + (h.getAttribute('aria-valuenow') || ''); }")


def _act(page: Page, kind: str, control: Locator, attempt: int) -> str:
    """Move one control as a user would; return a description of the move ("" if none)."""
    control.scroll_into_view_if_needed()
    if kind == "slider":
        before = _readout(control)
        if attempt == 0:
            _drag_slider(page, control)
            if _readout(control) != before:
                return "dragged slider handle"
        control.focus()
        key = "ArrowLeft" if attempt % 2 else "ArrowRight"
        for _ in range(3):
            control.press(key)
        if _readout(control) == before:  # at the end of the range: go the other way
            for _ in range(3):
                control.press("ArrowLeft" if key == "ArrowRight" else "ArrowRight")
        return f"pressed {key} on focused slider handle"
    if kind == "dropdown":
        options = control.locator("option").all_inner_texts()
        current = control.evaluate("s => s.options[s.selectedIndex] ? s.options[s.selectedIndex].text : ''")
        others = [o for o in options if o != current]
        if not others:
            return ""  # a single option: nothing a user could change
        control.select_option(label=others[attempt % len(others)])
        return f"picked {others[attempt % len(others)]!r}"
    if kind == "text":
        value = control.input_value()
        new = (str(int(value) + 1) if re.fullmatch(r"-?\d+", value or "")
               else f"{value}x" if value else "abc")
        control.click()
        control.fill("")
        control.type(new, delay=20)
        control.press("Enter")
        return f"typed {new!r} + Enter"
    control.click()
    return f"clicked {kind}"


def exercise_widget(page: Page, root: Locator, change_timeout_s: float = 45.0) -> str:
    """Move controls of one view until what it shows changes; return what worked.

    Raises AssertionError (listing what was tried) when no control changes the view.
    """
    controls = list_controls(root)
    assert controls, f"widget view has no control a user can move: {root.inner_html()[:400]}"
    tried = []
    for kind, control in controls:
        for attempt in range(2 if kind in ("slider", "text") else 1):
            before = root.evaluate(SNAPSHOT_JS)
            move = _act(page, kind, control, attempt)
            if not move:
                continue
            deadline = time.monotonic() + change_timeout_s * SLOW
            while time.monotonic() < deadline:
                if root.evaluate(SNAPSHOT_JS) != before:
                    return move
                time.sleep(0.2)
            tried.append(move)
    raise AssertionError(f"no control changed what the widget shows; tried: {tried}")


def screenshot(page: Page, folder: Path, name: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{re.sub(r'[^A-Za-z0-9_.-]+', '_', name)}.png"
    page.screenshot(path=str(path), full_page=True)
    return path

