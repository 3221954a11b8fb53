"""Find the notebooks the browser tests must open: those whose code uses ipywidgets."""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
NOTEBOOKS = REPO / "notebooks"
FIXTURE = Path(__file__).resolve().parent / "fixtures" / "widget_fixture.ipynb"
FIXTURE_NAME = "browser_fixture.ipynb"  # its name inside the served copy of notebooks/
# Kernels started by the servers inherit this: notebooks run their quick path (small data, few
# steps) so the suite fits in a few minutes on 2 cores; 2 threads = the CI machine's cores.
NOTEBOOK_ENV = {"SSLKIT_QUICK": os.environ.get("SSLKIT_QUICK", "1"),
                "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")}

# `import ipywidgets`, `from ipywidgets import ...`, `ipywidgets.interact`, `sslkit.widgets`,
# `from sslkit import widgets` / `from sslkit import data, widgets`.
WIDGETS_RE = re.compile(r"\bipywidgets\b|\bsslkit\.widgets\b|^\s*from\s+sslkit\s+import\s+[^#\n]*\bwidgets\b",
                        re.MULTILINE)
# The explorers (sslkit.widgets) are also served as Voila apps.
EXPLORER_RE = re.compile(r"\bsslkit\.widgets\b|^\s*from\s+sslkit\s+import\s+[^#\n]*\bwidgets\b",
                         re.MULTILINE)


def code_of(path: Path) -> str:
    nb = json.loads(path.read_text(encoding="utf-8"))
    return "\n".join("".join(c["source"]) if isinstance(c["source"], list) else c["source"]
                     for c in nb.get("cells", []) if c.get("cell_type") == "code")


def all_notebooks() -> list[Path]:
    return sorted(NOTEBOOKS.glob("*.ipynb")) if NOTEBOOKS.is_dir() else []


def widget_notebooks() -> list[Path]:
    return [p for p in all_notebooks() if WIDGETS_RE.search(code_of(p))]


def explorer_notebooks() -> list[Path]:
    return [p for p in all_notebooks() if EXPLORER_RE.search(code_of(p))]
