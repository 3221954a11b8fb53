"""Write student versions of notebooks: solutions removed, outputs cleared.

In a solution notebook an exercise looks like::

    def nt_xent(z1, z2, temperature=0.5):
        \"\"\"...\"\"\"
        ### BEGIN SOLUTION
        z = F.normalize(torch.cat([z1, z2]), dim=1)
        ...
        ### END SOLUTION

and the student version keeps the signature and docstring but reads::

        raise NotImplementedError("Exercise: implement nt_xent")

Plain JSON is read and written (no nbformat needed), keeping every other cell as it is.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

BEGIN = "### BEGIN SOLUTION"
END = "### END SOLUTION"
_DEF = re.compile(r"^\s*(?:async\s+)?def\s+(\w+)\s*\(")


def strip_source(source: str) -> str:
    """Replace every ``### BEGIN SOLUTION`` ... ``### END SOLUTION`` block (markers included) with
    ``raise NotImplementedError("Exercise: implement <function>")`` at the marker's indentation.

    Raises ``ValueError`` on an unbalanced or nested marker.
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
        if text == BEGIN:
            if inside:
                raise ValueError(f"line {lineno}: nested {BEGIN!r} (the previous block is not closed)")
            inside = True
            indent = line[: len(line) - len(line.lstrip())]
            what = f"implement {func}" if func else "fill in the solution"
            newline = "\n" if line.endswith("\n") else ""
            out.append(f'{indent}raise NotImplementedError("Exercise: {what}"){newline}')
        elif text == END:
            if not inside:
                raise ValueError(f"line {lineno}: {END!r} without a matching {BEGIN!r}")
            inside = False
        elif not inside:
            out.append(line)
    if inside:
        raise ValueError(f"{BEGIN!r} is never closed by {END!r}")
    return "".join(out)


def _strip_notebook(nb: dict) -> tuple[dict, int]:
    """(student notebook, number of solution blocks removed)."""
    removed = 0
    for cell in nb.get("cells", []):
        if cell.get("cell_type") != "code":
            continue
        src = cell["source"] if isinstance(cell["source"], str) else "".join(cell["source"])
        removed += sum(1 for line in src.splitlines() if line.strip() == BEGIN)
        cell["source"] = strip_source(src)
        cell["outputs"] = []
        cell["execution_count"] = None
        cell.get("metadata", {}).pop("execution", None)
    nb.get("metadata", {}).pop("widgets", None)  # stored widget state belongs to the executed run
    return nb, removed


def strip(src_dir: str | os.PathLike, dst_dir: str | os.PathLike) -> list[Path]:
    """Write a student version of every notebook under ``src_dir`` (or of one ``.ipynb`` file) into
    ``dst_dir``, keeping relative paths. Returns the written paths.

    Solutions between the markers are replaced (see :func:`strip_source`), outputs and execution
    counts cleared. ``dst_dir`` must differ from ``src_dir`` so the solutions are never overwritten.
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
    if dst.resolve() == base.resolve():
        raise ValueError(f"dst_dir={str(dst_dir)!r} is the source folder; choose another folder so "
                         f"the solutions are not overwritten")
    written = []
    for f in files:
        try:
            nb = json.loads(f.read_text(encoding="utf-8"))
            nb, _ = _strip_notebook(nb)
        except (json.JSONDecodeError, ValueError) as err:
            raise ValueError(f"{f}: {err}") from err
        target = dst / f.relative_to(base)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        written.append(target)
    return written
