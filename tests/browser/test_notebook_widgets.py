"""Every tutorial notebook with widgets, in JupyterLab (Run All Cells) and, for the notebooks
using the `sslkit.widgets` explorers, as a Voila app: widgets render, no JavaScript errors,
each explorer reacts to a user's move (a kernel round trip). Screenshots: artifacts/browser/."""
from __future__ import annotations

import pytest

from discover import all_notebooks, explorer_notebooks, widget_notebooks
from notebook_checks import check_lab_notebook, check_voila_page

pytestmark = pytest.mark.timeout(600)
RUN_TIMEOUT_S = 300  # Run All on CPU; notebooks take their SSLKIT_QUICK path here


def test_notebooks_with_widgets_are_found():
    """If the tutorials exist, the discovery must see widgets in them (or nothing is tested)."""
    if not all_notebooks():
        pytest.skip("no notebooks/*.ipynb yet")
    assert widget_notebooks(), "no notebook imports ipywidgets or sslkit.widgets"


@pytest.mark.parametrize("name", [p.name for p in widget_notebooks()])
def test_notebook_widgets_in_jupyterlab(name, lab_page, lab, artifacts):
    page, log = lab_page
    check_lab_notebook(page, lab, name, log, artifacts, run_timeout_s=RUN_TIMEOUT_S)


@pytest.mark.parametrize("name", [p.name for p in explorer_notebooks()])
def test_notebook_explorers_in_voila(name, voila_app, artifacts):
    server, page, log = voila_app(name)
    check_voila_page(page, server, name.removesuffix(".ipynb"), log, artifacts,
                     run_timeout_s=RUN_TIMEOUT_S)
