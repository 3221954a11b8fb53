"""Static checks of every committed notebook (no kernel needed): well-formed, small, executed without
errors, no machine paths in outputs, learning goals first, every code cell introduced by prose, and the
exercises: solutions pass their checkers, stripped versions do not."""
import json
import math
import re
from pathlib import Path

import pytest
import torch

import sslkit
import sslkit.exercises as ex

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("*.ipynb"))
MAX_BYTES = 1_000_000
# Absolute paths of the machine that executed the notebook (tqdm, warnings and tracebacks print them).
MACHINE_PATH = re.compile(r"(/work/|/tmp/|/root/|/home/|/Users/|[A-Za-z]:\\\\Users)")
CHECK_CALL = re.compile(r"sslkit\.exercises\.check(?:_(\w+)\((\w+)|\(\s*[\"'](\w+)[\"']\s*,\s*(\w+))")

pytestmark = pytest.mark.skipif(not NOTEBOOKS, reason="no notebooks yet")


def _load(path):
    return json.loads(path.read_text(encoding="utf-8"))


def _src(cell):
    return cell["source"] if isinstance(cell["source"], str) else "".join(cell["source"])


def _output_texts(cell):
    for out in cell.get("outputs", []):
        if out["output_type"] == "stream":
            yield "".join(out["text"]) if isinstance(out["text"], list) else out["text"]
        elif out["output_type"] == "error":
            yield out["ename"] + ": " + out["evalue"] + "\n".join(out.get("traceback", []))
        for mime, value in out.get("data", {}).items():
            if mime.startswith("text/") or mime.endswith("json"):
                yield value if isinstance(value, str) else json.dumps(value) if not isinstance(value, list) else "".join(value)


ids = [p.name for p in NOTEBOOKS]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids)
def test_valid_small_and_python3_kernel(path):
    nbformat = pytest.importorskip("nbformat")
    assert path.stat().st_size < MAX_BYTES, f"{path.name} is {path.stat().st_size} bytes (limit {MAX_BYTES})"
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    spec = nb.metadata.get("kernelspec", {})
    assert spec.get("name") == "python3" and spec.get("display_name") == "Python 3"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids)
def test_executed_without_errors_or_machine_paths(path):
    for i, cell in enumerate(_load(path)["cells"]):
        if cell["cell_type"] != "code":
            continue
        assert cell.get("execution_count") is not None, f"{path.name} cell {i} was not executed"
        for out in cell.get("outputs", []):
            assert out["output_type"] != "error", f"{path.name} cell {i} stored an error: {out.get('evalue')}"
            assert not (out["output_type"] == "stream" and out["name"] == "stderr"
                        and "Traceback" in "".join(out["text"])), f"{path.name} cell {i} printed a traceback"
        for text in _output_texts(cell):
            m = MACHINE_PATH.search(text)
            assert m is None, f"{path.name} cell {i} output contains a machine path: ...{text[max(0, m.start() - 40):m.end() + 40]}..."


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids)
def test_structure_goals_first_and_prose_before_code(path):
    cells = _load(path)["cells"]
    assert cells[0]["cell_type"] == "markdown" and "learning goals" in _src(cells[0]).lower(), \
        f"{path.name} must open with a markdown cell listing its learning goals"
    assert _src(cells[0]).lstrip().startswith("#"), f"{path.name} must open with a title"
    for i, (prev, cell) in enumerate(zip(cells, cells[1:]), start=1):
        if cell["cell_type"] == "code":
            assert prev["cell_type"] == "markdown", f"{path.name} cell {i} (code) is not introduced by a markdown cell"
    text = " ".join(_src(c).lower() for c in cells if c["cell_type"] == "markdown")
    assert "summary" in text and "exercise" in text, f"{path.name} needs a summary and exercises"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids)
def test_checked_outputs_are_stored(path):
    for i, cell in enumerate(_load(path)["cells"]):
        if cell["cell_type"] == "code" and _src(cell).startswith("# NBVAL_CHECK_OUTPUT"):
            assert cell.get("outputs"), f"{path.name} cell {i} is marked NBVAL_CHECK_OUTPUT but has no output"


def _exercises(path):
    """(function name, exercise name, solution source) for every solution cell followed by its checker."""
    cells = [c for c in _load(path)["cells"] if c["cell_type"] == "code"]
    found = []
    for cell in cells:
        src = _src(cell)
        for m in CHECK_CALL.finditer(src):
            exercise, fn = (m.group(1), m.group(2)) if m.group(1) else (m.group(3), m.group(4))
            solution = next((_src(c) for c in cells if "### BEGIN SOLUTION" in _src(c)
                             and re.search(rf"def {fn}\(", _src(c))), None)
            found.append((fn, exercise, solution))
    return found


@pytest.mark.parametrize("path", [p for p in NOTEBOOKS if re.match(r"0[1-6]_", p.name)],
                         ids=[p.name for p in NOTEBOOKS if re.match(r"0[1-6]_", p.name)])
def test_exercises_solutions_pass_and_stripped_fail(path):
    found = _exercises(path)
    assert found, f"{path.name} needs at least one checked exercise (### BEGIN SOLUTION + sslkit.exercises.check_*)"
    for fn, exercise, solution in found:
        assert solution is not None, f"{path.name}: no solution cell defines {fn}()"
        base = {"torch": torch, "F": torch.nn.functional, "nn": torch.nn, "math": math, "sslkit": sslkit}
        full, student = dict(base), dict(base)
        exec(solution, full)
        assert ex.check(exercise, full[fn], verbose=False), f"{path.name}: the reference {fn} fails its checker"
        exec(ex.strip_source(solution), student)
        res = ex.check(exercise, student[fn], verbose=False)
        assert not res and "not implemented yet" in res.report()


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids)
def test_stored_checker_verdicts_pass(path):
    for i, cell in enumerate(_load(path)["cells"]):
        if cell["cell_type"] == "code" and CHECK_CALL.search(_src(cell)):
            text = "".join(_output_texts(cell))
            assert "✅" in text and "❌" not in text, f"{path.name} cell {i}: the stored checker verdict is not a pass"


def test_strip_all_notebooks(tmp_path):
    written = ex.strip(NOTEBOOKS[0].parent, tmp_path)
    assert len(written) == len(NOTEBOOKS)
    for p in written:
        nb = _load(p.path)
        for cell in nb["cells"]:
            src = _src(cell)
            assert "### BEGIN SOLUTION" not in src
            if cell["cell_type"] == "code":
                assert cell["outputs"] == [] and cell["execution_count"] is None
