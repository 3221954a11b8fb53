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

# A notebook "has widgets" when its code imports ipywidgets or calls an sslkit explorer/viewer
# (`widgets.masking_explorer(...)`, `token_masking_viewer(...)`). Importing `sslkit.widgets` only
# for its PNG helpers (`widgets.show_png`, `widgets.figure`) displays no widget.
WIDGETS_RE = re.compile(r"^\s*(?:import|from)\s+ipywidgets\b|\b\w+_(?:explorer|viewer)\s*\(", re.MULTILINE)
# Notebooks built on the sslkit explorers are also served as Voila apps.
EXPLORER_RE = re.compile(r"\b\w+_(?:explorer|viewer)\s*\(")


def code_of(path: Path) -> str:
    nb = json.loads(path.read_text(encoding="utf-8"))
    return "\n".join("".join(c["source"]) if isinstance(c["source"], list) else c["source"]
                     for c in nb.get("cells", []) if c.get("cell_type") == "code")


def all_notebooks() -> list[Path]:
    return sorted(NOTEBOOKS.glob("*.ipynb")) if NOTEBOOKS.is_dir() else []


def widget_notebooks() -> list[Path]:
    return [p for p in all_notebooks() if WIDGETS_RE.search(code_of(p))]


DEFAULT_VOILA = "02_contrastive_pairs,06_feature_explorer"


def explorer_notebooks() -> list[Path]:
    """Explorer notebooks also served as Voila apps (every widget notebook runs in JupyterLab).

    Default: the two notebooks built around explorers (the augmentation explorer of 02 and the
    feature explorer of 06), which keeps the suite near 5 minutes on 2 cores.
    SSLKIT_BROWSER_VOILA="01_masking,02_contrastive_pairs" (stems) picks others, "all" every
    widget notebook, "none" no Voila run."""
    found = [p for p in all_notebooks() if EXPLORER_RE.search(code_of(p))]
    wanted = os.environ.get("SSLKIT_BROWSER_VOILA", DEFAULT_VOILA).strip()
    if wanted == "all":
        return found
    stems = {w.strip().removesuffix(".ipynb") for w in wanted.split(",")} - {"none", ""}
    return [p for p in found if p.stem in stems]
