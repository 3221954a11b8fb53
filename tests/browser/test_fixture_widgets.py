"""Always-on smoke tests on a tiny fixture notebook (a slider + toggle + text box wired to the
kernel), plus the negative control: the same check must fail when the widget front end is off."""
from __future__ import annotations

import pytest

from discover import FIXTURE_NAME, NOTEBOOK_ENV
from lab_servers import start_lab, stop_server
from notebook_checks import check_lab_notebook, check_voila_page
from widget_page import SLOW, assert_images_sharp, watch

pytestmark = pytest.mark.timeout(600)


def test_fixture_widgets_work_in_jupyterlab(lab_page, lab, artifacts):
    page, log = lab_page
    moves = check_lab_notebook(page, lab, FIXTURE_NAME, log, artifacts, run_timeout_s=120)
    assert [m.split(":")[0] for m in moves] == ["view 0", "view 1"]  # both explorers reacted


def test_fixture_widgets_work_in_voila(voila_app, artifacts):
    server, page, log = voila_app(FIXTURE_NAME)
    moves = check_voila_page(page, server, "browser_fixture", log, artifacts, run_timeout_s=120)
    assert len(moves) == 2


def test_negative_control_without_widget_manager(chromium_browser, lab_root, tmp_path_factory,
                                                 artifacts):
    """With @jupyter-widgets/jupyterlab-manager disabled the check must fail, or it proves nothing.

    By hand: JUPYTER_CONFIG_DIR=$(mktemp -d) .venv/bin/jupyter labextension disable
    --level=user @jupyter-widgets/jupyterlab-manager, then `jupyter lab` with that variable set.
    """
    server = start_lab(lab_root, tmp_path_factory.mktemp("labhome-nowidgets"),
                       disable_widgets=True, env_extra=NOTEBOOK_ENV, timeout=180 * SLOW)
    context = chromium_browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        page = context.new_page()
        log = watch(page, server.url)
        with pytest.raises(AssertionError, match="widget views displayed by the kernel but 0 rendered"):
            check_lab_notebook(page, server, FIXTURE_NAME, log, artifacts / "negative-control",
                               run_timeout_s=120)
        # The kernel did display widgets; the page shows their text repr instead of controls.
        assert "IntSlider(value=10" in page.locator(".jp-Notebook").inner_text()
    finally:
        context.close()
        stop_server(server)


def test_image_check_catches_stretched_and_soft_images(chromium_browser):
    """The sharpness check must fail on a PNG the page stretches, and on an explorer image with one
    pixel per CSS pixel; and pass on one shown at half its pixels (what the kit's figures do)."""
    import base64
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (40, 20), "red").save(buf, format="PNG")
    src = "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()
    context = chromium_browser.new_context(device_scale_factor=2)
    try:
        page = context.new_page()
        page.set_content(f'<div id="a"><img src="{src}" width="20"></div>'
                         f'<div id="b"><img src="{src}" style="width: 100px"></div>'
                         f'<div id="c" class="jupyter-widgets"><img src="{src}"></div>')
        page.wait_for_function("() => [...document.images].every(i => i.complete)")
        assert len(assert_images_sharp(page.locator("#a"))) == 1
        with pytest.raises(AssertionError, match="40x20 px shown at 100x50"):
            assert_images_sharp(page.locator("#b"))
        with pytest.raises(AssertionError, match="40 px shown 40 px wide"):
            assert_images_sharp(page.locator("#c"))
    finally:
        context.close()
