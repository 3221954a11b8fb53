"""Write student copies of notebooks: solutions removed, giveaways replaced, outputs cleared.

In a solution notebook an exercise is a code cell tagged ``exercise`` (cell metadata
``sslkit.exercise`` names it) whose body sits between markers::

    def nt_xent(z1, z2, temperature=0.5):
        \"\"\"...\"\"\"
        ### BEGIN SOLUTION
        z = F.normalize(torch.cat([z1, z2]), dim=1)
        ...
        ### END SOLUTION

and the student copy keeps the signature and docstring but reads::

        # YOUR CODE HERE
        # z1, z2 (N, D) -> loss () averaged over the 2N anchors
        raise NotImplementedError("Exercise: implement nt_xent")

Other tags: ``check`` (the cell that runs the checker), ``exercise-text`` (the exercise's prose) and
``derivation`` (a cell elsewhere in the notebook that would give the exercise away). Any cell with
``sslkit.student`` in its metadata gets that source in the student copy: derivation cells must have
one (a version that stops short of the answer), exercise prose uses it for the student's wording.

Safety: a marker written slightly wrong (``## BEGIN SOLUTION``, ``###BEGIN SOLUTION``, lower case)
is refused with the cell and line, and every copy is read back after writing to verify that no
line of a solution remains (the copy is deleted if one does).
"""
from __future__ import annotations

import copy
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BEGIN = "### BEGIN SOLUTION"
END = "### END SOLUTION"
_DEF = re.compile(r"^\s*(?:async\s+)?def\s+(\w+)\s*\(")
_NEAR = re.compile(r"^\s*#+\s*(?:begin|end)[\s_-]*solutions?\b", re.IGNORECASE)
_NBVAL_OUTPUT = re.compile(r"^\s*#\s*NBVAL_(?:CHECK|IGNORE)_OUTPUT\s*$")
_MIN_SECRET = 10   # solution lines shorter than this (``return x``) are too common to verify


class StripError(ValueError):
    """A notebook cannot be stripped safely (the message names the notebook, cell and line)."""


@dataclass
class Stripped:
    """What ``strip`` did to one notebook."""

    source: Path
    path: Path                                  # the student copy
    exercises: list[str] = field(default_factory=list)
    blocks: int = 0                             # solution blocks removed
    derivations: int = 0                        # giveaway cells replaced by their student version
    dropped: int = 0                            # cells of other exercises left out (``only``)

    def summary(self) -> str:
        parts = [f"{self.blocks} solution block{'s' * (self.blocks != 1)} removed"
                 + (f" ({', '.join(self.exercises)})" if self.exercises else "")]
        if self.derivations:
            parts.append(f"{self.derivations} derivation cell{'s' * (self.derivations != 1)} replaced")
        if self.dropped:
            parts.append(f"{self.dropped} cell{'s' * (self.dropped != 1)} of other exercises left out")
        return f"{self.source.name} -> {self.path}: " + ", ".join(parts)


def _shapes(function: str) -> str:
    from sslkit.exercises.catalog import EXERCISES
    return EXERCISES[function].shapes if function in EXERCISES else ""


def strip_source(source: str, *, where: str = "") -> str:
    """Replace every ``### BEGIN SOLUTION`` ... ``### END SOLUTION`` block (markers included) with
    the student's scaffold, at the marker's indentation: ``# YOUR CODE HERE``, the exercise's shapes
    (when the enclosing function is a known exercise) and
    ``raise NotImplementedError("Exercise: implement <function>")``.

    Raises :class:`StripError` (a ``ValueError``) on an unbalanced or nested marker, and on a line
    that looks like a marker but is not exactly one; ``where`` prefixes the message.
    """
    out: list[str] = []
    inside = False
    func = ""
    for lineno, line in enumerate(source.splitlines(keepends=True), start=1):
        text = line.strip()
        if not inside:
            m = _DEF.match(line)
            if m:
                func = m.group(1)
        if text not in (BEGIN, END) and _NEAR.match(line):
            raise StripError(f"{where}line {lineno}: {text!r} looks like a solution marker but is not "
                             f"one; write exactly {BEGIN!r} / {END!r}")
        if text == BEGIN:
            if inside:
                raise StripError(f"{where}line {lineno}: nested {BEGIN!r} (the previous block is not closed)")
            inside = True
            indent = line[: len(line) - len(line.lstrip())]
            newline = "\n" if line.endswith("\n") else ""
            shapes = _shapes(func)
            out.append(f"{indent}# YOUR CODE HERE\n")
            out += [f"{indent}# {line}\n" for line in shapes.splitlines()]
            what = f"implement {func}" if func else "fill in the solution"
            out.append(f'{indent}raise NotImplementedError("Exercise: {what}"){newline}')
        elif text == END:
            if not inside:
                raise StripError(f"{where}line {lineno}: {END!r} without a matching {BEGIN!r}")
            inside = False
        elif not inside:
            out.append(line)
    if inside:
        raise StripError(f"{where}{BEGIN!r} is never closed by {END!r}")
    return "".join(out)


def _src(cell: dict) -> str:
    return cell["source"] if isinstance(cell["source"], str) else "".join(cell["source"])


def _meta(cell: dict) -> dict:
    meta = cell.get("metadata", {}).get("sslkit", {})
    return meta if isinstance(meta, dict) else {}


def cell_exercises(cell: dict) -> list[str]:
    """The exercises a cell belongs to (metadata ``sslkit.exercise``: a name or a list)."""
    names = _meta(cell).get("exercise", [])
    return [names] if isinstance(names, str) else list(names)


def roles(cell: dict) -> set[str]:
    tags = cell.get("metadata", {}).get("tags", [])
    return {t for t in tags if t in ("exercise", "check", "exercise-text", "derivation")}


def _solution_lines(source: str) -> list[str]:
    lines, inside = [], False
    for line in source.splitlines():
        if line.strip() == BEGIN:
            inside = True
        elif line.strip() == END:
            inside = False
        elif inside:
            lines.append(line)
    return lines


def _norm(line: str) -> str:
    return " ".join(line.split())


def _graded_check(names: list[str]) -> str:
    return "\n".join(f"sslkit.exercises.check_{n}({n}, raise_error=True)" for n in names)


def student_notebook(nb: dict, *, name: str = "notebook", only: str | None = None, graded: bool = False,
                     nbgrader: bool = False) -> tuple[dict, Stripped, set[str]]:
    """(student copy, what was done, the solution lines that must not appear in the copy)."""
    from sslkit.exercises.catalog import EXERCISES
    nb = copy.deepcopy(nb)
    info = Stripped(Path(name), Path(name))
    secret: set[str] = set()
    points: dict[str, float] = {}
    public: set[str] = set()   # lines of the solution notebook outside any giveaway: never secret
    cells = []
    for i, cell in enumerate(nb.get("cells", [])):
        where = f"{name} cell {i}, "
        src, meta, role, exs = _src(cell), _meta(cell), roles(cell), cell_exercises(cell)
        has_block = cell.get("cell_type") == "code" and any(line.strip() == BEGIN for line in src.splitlines())
        if "derivation" in role and "student" not in meta:
            raise StripError(f"{where}tagged 'derivation' but has no student version (metadata sslkit.student)")
        if "exercise" in role and not exs:
            raise StripError(f"{where}tagged 'exercise' but metadata sslkit.exercise does not name the exercise")
        if only is not None and role & {"exercise", "check", "exercise-text"} and only not in exs:
            info.dropped += 1
            secret.update(_solution_lines(src) if has_block else [])
            continue
        if "student" in meta:
            student = meta["student"] if isinstance(meta["student"], str) else "".join(meta["student"])
            if "derivation" in role:
                info.derivations += 1
                kept = {_norm(x) for x in student.splitlines()}
                secret.update(x for x in src.splitlines() if _norm(x) not in kept)
            public.update(student.splitlines())   # written for students on purpose
            src = student
        elif not has_block:
            public.update(src.splitlines())
        if cell.get("cell_type") == "code":
            if has_block:
                secret.update(_solution_lines(src))
                info.blocks += sum(1 for line in src.splitlines() if line.strip() == BEGIN)
                found = exs or [m.group(1) for m in map(_DEF.match, src.splitlines()) if m and m.group(1) in EXERCISES]
                info.exercises += [e for e in found if e not in info.exercises]
                points.update({e: nb_points([e], meta) for e in found})
            src = strip_source(src, where=where)
            if graded and "check" in role and exs:
                src = _graded_check(exs)
            src = "\n".join(x for x in src.split("\n") if not _NBVAL_OUTPUT.match(x)).rstrip("\n")
            cell["outputs"], cell["execution_count"] = [], None
        else:
            for lineno, line in enumerate(src.splitlines(), start=1):
                if _NEAR.match(line) or line.strip() in (BEGIN, END):
                    raise StripError(f"{where}line {lineno}: a solution marker in a {cell.get('cell_type')} cell")
        cell["source"] = src
        md = cell.setdefault("metadata", {})
        md.pop("execution", None)
        if isinstance(md.get("sslkit"), dict):
            md["sslkit"] = {k: v for k, v in md["sslkit"].items() if k != "student"}
        if nbgrader and exs and role & {"exercise", "check"}:
            md["nbgrader"] = _nbgrader(exs, "exercise" in role, nb_points(exs, meta))
        cells.append(cell)
    nb["cells"] = cells
    meta = nb.setdefault("metadata", {})
    meta.pop("widgets", None)  # stored widget state belongs to the executed run
    exercises = [e for e in info.exercises if only is None or e == only]
    meta["sslkit"] = {"exercises": {e: points[e] for e in exercises}}
    secret = {_norm(x) for x in secret if len(_norm(x)) >= _MIN_SECRET} - {_norm(x) for x in public}
    return nb, info, secret


def nb_points(exs: list[str], meta: dict) -> float:
    from sslkit.exercises.catalog import EXERCISES
    if "points" in meta:
        return float(meta["points"])
    return float(sum(EXERCISES[e].points if e in EXERCISES else 1 for e in exs))


def _nbgrader(exs: list[str], solution: bool, points: float) -> dict[str, Any]:
    """nbgrader's cell metadata (schema 3): solution cells are editable, check cells are locked tests."""
    md: dict[str, Any] = {"grade": not solution, "grade_id": ("" if solution else "check_") + "_".join(exs),
                          "locked": not solution, "schema_version": 3, "solution": solution, "task": False}
    if not solution:
        md["points"] = points
    return md


def verify(path: Path, secret: set[str]) -> None:
    """Raise StripError if the written copy still holds a solution line or a marker."""
    nb = json.loads(path.read_text(encoding="utf-8"))
    for i, cell in enumerate(nb.get("cells", [])):
        for lineno, line in enumerate(_src(cell).splitlines(), start=1):
            if _norm(line) in secret or line.strip() in (BEGIN, END) or _NEAR.match(line):
                raise StripError(f"{path} cell {i}, line {lineno}: solution text remains after stripping: "
                                 f"{line.strip()!r}")


def strip(src_dir: str | os.PathLike, dst_dir: str | os.PathLike, *, only: str | None = None,
          graded: bool = False, nbgrader: bool = False) -> list[Stripped]:
    """Write a student copy of every notebook under ``src_dir`` (or of one ``.ipynb`` file) into
    ``dst_dir``, keeping relative paths; returns what was done to each.

    ``only``: hand out one exercise - only notebooks that contain it are written, and other
    exercises' cells are left out. ``graded``: check cells raise on failure (for autograders).
    ``nbgrader``: also write nbgrader's solution/grade metadata with points (implies ``graded``).
    Derivation cells are always replaced by their student version, outputs and execution counts
    cleared, ``# NBVAL_CHECK_OUTPUT`` lines dropped. ``dst_dir`` must not be inside the source folder.
    """
    src, dst = Path(src_dir), Path(dst_dir)
    if not src.exists():
        raise ValueError(f"src_dir={str(src_dir)!r} does not exist")
    if src.is_file():
        if src.suffix != ".ipynb":
            raise ValueError(f"src_dir={str(src_dir)!r} must be a folder or an .ipynb file")
        files, base = [src], src.parent
    else:
        files = sorted(p for p in src.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)
        base = src
    if dst.resolve() == base.resolve() or dst.resolve().is_relative_to(base.resolve()):
        raise ValueError(f"dst_dir={str(dst_dir)!r} is inside the source folder {str(base)!r}; choose a folder "
                         f"outside it (the solutions must not be overwritten, and a later strip of the source "
                         f"folder would take the student copies for solution notebooks)")
    if only is not None:
        from sslkit import checks
        from sslkit.exercises.catalog import EXERCISES
        checks.choice("only", only, list(EXERCISES))
    jobs = []
    for f in files:
        try:
            nb = json.loads(f.read_text(encoding="utf-8"))
            student, info, secret = student_notebook(nb, name=f.name, only=only, graded=graded or nbgrader,
                                                     nbgrader=nbgrader)
        except json.JSONDecodeError as err:
            raise StripError(f"{f}: not a notebook ({err})") from err
        if only is None or only in info.exercises:
            jobs.append((f, student, info, secret))
    if only is not None and not jobs:
        raise ValueError(f"only={only!r}: no notebook under {str(src_dir)!r} contains that exercise")
    done = []
    for f, student, info, secret in jobs:
        target = dst / f.relative_to(base)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(student, indent=1, ensure_ascii=False, sort_keys=True) + "\n", encoding="utf-8")
        try:
            verify(target, secret)
        except StripError:
            target.unlink()
            raise
        info.source, info.path = f, target
        done.append(info)
    return done
