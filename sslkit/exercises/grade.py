"""Grade submitted notebooks: run their exercise cells against the checkers in a fresh process.

    sslkit exercises grade alice/02_contrastive_pairs.ipynb bob/ --json scores.json

For each submission a new Python interpreter (a fresh kernel: nothing of the grader's state, and
the same sslkit) runs a small preamble (``torch``, ``F``, ``nn``, ``math``, ``sslkit``), then the
notebook's exercise cells (tagged ``exercise``, or - in notebooks without tags - the cells that
define an exercise's function), then each exercise's checker. Each cell and each check has a time
limit; the whole run has one too. Line and cell magics are tolerated (ignored, or the cell body is
run). Helpers a solution needs must be defined in its exercise cell.

Score per exercise: all its points when every check passes; otherwise the share of checks passed
(``all_or_nothing=True``: 0), and 0 when it is missing, not implemented, raised, timed out or calls
the kit's own implementation. Grading runs the students' code: do it in a container or a throwaway
account, as with any autograder.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

MARK = "@@sslkit-grade "
PREAMBLE = "import math\nimport torch\nimport torch.nn.functional as F\nfrom torch import nn\nimport sslkit\n"


@dataclass
class ExerciseScore:
    exercise: str
    points: float
    score: float = 0.0
    status: str = "missing"      # passed, failed, not implemented, uses the kit, missing, error, timeout
    cases_passed: int = 0
    cases: int = 0
    hint: str = ""
    failures: list[dict[str, str]] = field(default_factory=list)
    error: str = ""


@dataclass
class Graded:
    path: str
    exercises: list[ExerciseScore]
    cell_errors: list[str] = field(default_factory=list)

    @property
    def score(self) -> float:
        return round(sum(e.score for e in self.exercises), 2)

    @property
    def max_score(self) -> float:
        return round(sum(e.points for e in self.exercises), 2)

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "score": self.score, "max_score": self.max_score,
                "exercises": [asdict(e) for e in self.exercises], "cell_errors": self.cell_errors}

    def table(self) -> str:
        lines = [self.path]
        for e in self.exercises:
            detail = e.status + (f" ({e.cases_passed}/{e.cases} checks)" if e.status == "failed" else "")
            lines.append(f"  {e.exercise:20s} {e.score:5.2f} / {e.points:g}   {detail}")
        lines.append(f"  {'total':20s} {self.score:5.2f} / {self.max_score:g}")
        lines += [f"  note: {err}" for err in self.cell_errors]
        return "\n".join(lines)


def _notebooks(paths: list[str | os.PathLike]) -> list[Path]:
    out = []
    for p in map(Path, paths):
        if p.is_dir():
            out += sorted(q for q in p.rglob("*.ipynb") if ".ipynb_checkpoints" not in q.parts)
        elif p.is_file() and p.suffix == ".ipynb":
            out.append(p)
        else:
            raise ValueError(f"submission {str(p)!r} is not an .ipynb file or a folder of them")
    if not out:
        raise ValueError(f"no notebooks found in {[str(p) for p in paths]}")
    return out


def exercise_cells(nb: dict) -> tuple[list[dict[str, Any]], dict[str, float]]:
    """(cells to run as {index, source}, exercise -> points) for one notebook."""
    import re

    from sslkit.exercises.catalog import EXERCISES
    from sslkit.exercises.strip import _src, cell_exercises, nb_points, roles
    cells, found = [], {}
    tagged = any("exercise" in roles(c) for c in nb.get("cells", []))
    for i, c in enumerate(nb.get("cells", [])):
        if c.get("cell_type") != "code":
            continue
        src = _src(c)
        if tagged:
            if "exercise" in roles(c):
                cells.append({"index": i, "source": src})
                for e in cell_exercises(c):
                    found[e] = nb_points([e], c.get("metadata", {}).get("sslkit", {}))
        else:
            defined = [n for n in re.findall(r"^def\s+(\w+)\s*\(", src, re.MULTILINE) if n in EXERCISES]
            if defined:
                cells.append({"index": i, "source": src})
                found.update({n: float(EXERCISES[n].points) for n in defined})
    declared = nb.get("metadata", {}).get("sslkit", {}).get("exercises")
    if isinstance(declared, dict) and declared:   # written by strip: a deleted cell still counts
        found = {**{e: float(p) for e, p in declared.items()}, **{e: p for e, p in found.items() if e in declared}}
    return cells, {e: found[e] for e in EXERCISES if e in found}   # in notebook order


def grade(paths: list[str | os.PathLike], *, timeout: float = 60.0, all_or_nothing: bool = False) -> list[Graded]:
    """Grade each submitted notebook (files, or folders of them); see the module docstring."""
    if not timeout > 0:
        raise ValueError(f"timeout={timeout!r} must be a positive number of seconds")
    results = []
    for path in _notebooks(paths):
        try:
            nb = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ValueError(f"{path}: not a notebook ({err})") from err
        cells, points = exercise_cells(nb)
        if not points:
            raise ValueError(f"{path}: no exercises found (no cell tagged 'exercise' and no function of a "
                             f"known exercise)")
        results.append(_run(path, cells, points, timeout, all_or_nothing))
    return results


def _run(path: Path, cells: list[dict[str, Any]], points: dict[str, float], timeout: float,
         all_or_nothing: bool) -> Graded:
    scores = {e: ExerciseScore(e, p) for e, p in points.items()}
    job = {"cells": cells, "exercises": list(points), "timeout": timeout}
    root = str(Path(__file__).resolve().parents[2])   # the folder holding this sslkit
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1", "PYTHONIOENCODING": "utf-8"}
    limit = timeout * (len(cells) + len(points)) + 60   # every cell and check, plus start-up
    errors: list[str] = []
    crashed = timed_out = False
    with tempfile.TemporaryDirectory() as tmp:
        try:
            proc = subprocess.run([sys.executable, "-m", "sslkit.exercises.grade"], input=json.dumps(job),
                                  capture_output=True, text=True, timeout=limit, cwd=tmp, env=env)
            out = proc.stdout
            if proc.returncode != 0:
                crashed = True
                tail = proc.stderr.strip().splitlines()[-1:] or [""]
                errors.append(f"the grading process exited with status {proc.returncode}: {tail[0]}")
        except subprocess.TimeoutExpired as err:
            out = err.stdout.decode() if isinstance(err.stdout, bytes) else (err.stdout or "")
            timed_out = True
            errors.append(f"the run was stopped after {limit:.0f} s")
    for line in out.splitlines():
        if not line.startswith(MARK):
            continue
        msg = json.loads(line[len(MARK):])
        if "cell_error" in msg:
            errors.append(msg["cell_error"])
        elif msg.get("exercise") in scores:
            s = scores[msg["exercise"]]
            s.status, s.error = msg["status"], msg.get("error", "")
            s.cases_passed, s.cases = msg.get("cases_passed", 0), msg.get("cases", 0)
            s.hint, s.failures = msg.get("hint", ""), msg.get("failures", [])
    for s in scores.values():
        if s.status == "missing" and (timed_out or crashed) and not s.error:
            s.status = "timeout" if timed_out else "error"
        if s.status == "passed":
            s.score = s.points
        elif s.status == "failed" and s.cases and not all_or_nothing:
            s.score = round(s.points * s.cases_passed / s.cases, 2)
    return Graded(str(path), list(scores.values()), errors)


# ---- the child process ---------------------------------------------------------------------------
class _Shell:
    """Stands in for IPython's ``get_ipython()``: line magics and shell commands are ignored, a cell
    magic runs its cell body."""

    def __init__(self, ns: dict[str, Any]) -> None:
        self.ns = ns

    def run_line_magic(self, *args: Any, **kwargs: Any) -> None:
        return None

    def system(self, *args: Any, **kwargs: Any) -> None:
        return None

    getoutput = system

    def run_cell_magic(self, name: str, line: str, cell: str) -> None:
        exec(compile(cell, "<cell magic>", "exec"), self.ns)


class _TimeLimit(BaseException):
    """Raised by the timer; a BaseException so that no ``except Exception`` on the way swallows it."""


def _emit(msg: dict[str, Any]) -> None:
    sys.stdout.write("\n" + MARK + json.dumps(msg) + "\n")
    sys.stdout.flush()


def _child() -> None:
    import signal

    job = json.loads(sys.stdin.read())
    import torch

    from sslkit.exercises import check   # captured before any student code runs
    torch.set_num_threads(1)
    timeout = float(job["timeout"])

    def alarm(signum: int, frame: Any) -> None:
        raise _TimeLimit(f"time limit of {timeout:g} s exceeded")

    timer = hasattr(signal, "setitimer")
    if timer:
        signal.signal(signal.SIGALRM, alarm)
    ns: dict[str, Any] = {"__name__": "__main__"}
    exec(PREAMBLE, ns)
    ns["get_ipython"] = lambda: _Shell(ns)
    try:
        from IPython.core.inputtransformer2 import TransformerManager
        transform = TransformerManager().transform_cell
    except ImportError:  # plain Python cells still work
        def transform(src: str) -> str:
            return src
    for cell in job["cells"]:
        try:
            if timer:
                signal.setitimer(signal.ITIMER_REAL, timeout)
            exec(compile(transform(cell["source"]), f"<cell {cell['index']}>", "exec"), ns)
        except BaseException as err:  # noqa: BLE001 - report, then grade what was defined
            _emit({"cell_error": f"cell {cell['index']} raised {type(err).__name__}: {err}"})
        finally:
            if timer:
                signal.setitimer(signal.ITIMER_REAL, 0)
    for name in job["exercises"]:
        fn = ns.get(name)
        if not callable(fn):
            _emit({"exercise": name, "status": "missing", "error": f"no function {name}() was defined"})
            continue
        try:
            if timer:
                signal.setitimer(signal.ITIMER_REAL, timeout)
            res = check(name, fn, verbose=False)
            _emit(res.to_dict())
        except _TimeLimit as err:
            _emit({"exercise": name, "status": "timeout", "error": str(err)})
        except BaseException as err:  # noqa: BLE001 - a student function can break anything
            _emit({"exercise": name, "status": "error", "error": f"{type(err).__name__}: {err}"})
        finally:
            if timer:
                signal.setitimer(signal.ITIMER_REAL, 0)


if __name__ == "__main__":
    _child()
