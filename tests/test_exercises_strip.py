"""Student copies and grading on the kit's real notebooks: solutions and giveaways gone, student
wording and scaffolds, near-miss markers refused, --only / --graded / --nbgrader, and
`sslkit exercises grade` scoring submissions in a fresh process with a time limit."""
import importlib
import json
import math
import re
from pathlib import Path

import pytest
import torch

import sslkit
import sslkit.exercises as ex
from sslkit.cli import main
from sslkit.exercises.catalog import EXERCISES
from sslkit.exercises.strip import BEGIN, StripError

strip_module = importlib.import_module("sslkit.exercises.strip")   # the module (ex.strip is the function)
NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
EXERCISE_NOTEBOOKS = sorted(NOTEBOOKS.glob("0[1-6]_*.ipynb"))
pytestmark = pytest.mark.skipif(not EXERCISE_NOTEBOOKS, reason="no notebooks")


def _load(path):
    return json.loads(Path(path).read_text(encoding="utf-8"))


def _src(cell):
    return cell["source"] if isinstance(cell["source"], str) else "".join(cell["source"])


def _tags(cell):
    return cell.get("metadata", {}).get("tags", [])


def _run_cells(cells):
    ns = {"torch": torch, "F": torch.nn.functional, "nn": torch.nn, "math": math, "sslkit": sslkit}
    for c in cells:
        exec(_src(c), ns)
    return ns


@pytest.fixture(scope="module")
def student(tmp_path_factory):
    dst = tmp_path_factory.mktemp("student")
    return dst, {s.source.name: s for s in ex.strip(NOTEBOOKS, dst)}


# ---- the solution notebooks ----------------------------------------------------------------------
def test_every_notebook_poses_an_exercise_it_does_not_solve_elsewhere():
    seen = set()
    for path in EXERCISE_NOTEBOOKS:
        cells = _load(path)["cells"]
        posed = {e for c in cells if "exercise" in _tags(c) for e in strip_module.cell_exercises(c)}
        derived = {e for c in cells if "derivation" in _tags(c) for e in strip_module.cell_exercises(c)}
        assert posed - derived, f"{path.name}: every exercise is also derived in the notebook"
        assert all(EXERCISES[e].notebook == path.stem for e in posed), path.name
        seen |= posed
    assert seen == set(EXERCISES)   # every checker has its exercise in a notebook


def test_masked_mse_solution_is_zero_not_nan_on_an_empty_mask():
    cells = [c for c in _load(NOTEBOOKS / "04_reconstruction.ipynb")["cells"] if "exercise" in _tags(c)]
    masked_mse = _run_cells(cells)["masked_mse"]
    pred, target = torch.randn(2, 5, 12), torch.randn(2, 5, 12)
    for norm_pix in (False, True):
        assert masked_mse(pred, target, torch.zeros(2, 5, dtype=torch.bool), norm_pix).item() == 0.0


# ---- student copies ------------------------------------------------------------------------------
def test_student_copies_hold_no_solution(student):
    dst, done = student
    derivations = {"01_masking": 1, "02_contrastive_pairs": 2, "03_no_negatives": 0, "04_reconstruction": 2,
                   "05_probing": 1, "06_feature_explorer": 2}
    for path in EXERCISE_NOTEBOOKS:
        info, solution, copy = done[path.name], _load(path), _load(dst / path.name)
        posed = [e for e, x in EXERCISES.items() if x.notebook == path.stem]
        assert info.blocks == len(posed) and sorted(info.exercises) == sorted(posed)
        assert info.derivations == derivations[path.stem]
        assert copy["metadata"]["sslkit"]["exercises"] == {e: EXERCISES[e].points for e in posed}
        # Every line of a solution block, and every line a derivation loses, is gone from the copy.
        secret = set()
        for c in solution["cells"]:
            lines, inside = _src(c).splitlines(), False
            for line in lines:
                inside = (inside or line.strip() == BEGIN) and line.strip() != "### END SOLUTION"
                if inside and len(line.strip()) > 12 and line.strip() != BEGIN:
                    secret.add(line.strip())
            if "derivation" in _tags(c):
                student_lines = {x.strip() for x in c["metadata"]["sslkit"]["student"].splitlines()}
                secret |= {x.strip() for x in lines if len(x.strip()) > 12} - student_lines
        # Lines that the notebook also uses outside exercises and derivations, or that a student version
        # shows on purpose, are no secret.
        secret -= {x.strip() for c in solution["cells"] if not {"exercise", "derivation"} & set(_tags(c))
                   for x in _src(c).splitlines()}
        secret -= {x.strip() for c in solution["cells"] for x in c["metadata"].get("sslkit", {}).get("student", "").splitlines()}
        lines = {x.strip() for c in copy["cells"] for x in _src(c).splitlines()}
        leaked = sorted(secret & lines)
        assert not leaked, f"{path.name}: {leaked[:3]}"
        for c in copy["cells"]:
            src = _src(c)
            assert "BEGIN SOLUTION" not in src and "NBVAL_CHECK_OUTPUT" not in src and "student" not in c["metadata"].get("sslkit", {})
            if c["cell_type"] == "code":
                assert c["outputs"] == [] and c["execution_count"] is None and "execution" not in c["metadata"]
        assert "widgets" not in copy["metadata"]


def test_student_wording_and_scaffold(student):
    dst, _ = student
    for path in EXERCISE_NOTEBOOKS:
        for c in _load(dst / path.name)["cells"]:
            src = _src(c)
            if "exercise-text" in _tags(c):
                assert "solution is filled in" not in src and "between the markers" not in src.lower()
            if "exercise" in _tags(c):
                name = c["metadata"]["sslkit"]["exercise"]
                assert re.search(rf"^def {name}\(", src, re.M), src                     # the signature stays
                assert '"""' in src                                                       # and the docstring
                assert "    # YOUR CODE HERE\n" in src
                assert "    # " + EXERCISES[name].shapes.splitlines()[0] in src           # the shapes
                assert src.rstrip().endswith(f'raise NotImplementedError("Exercise: implement {name}")')
        texts = [_src(c) for c in _load(dst / path.name)["cells"] if "exercise-text" in _tags(c)]
        assert any("# YOUR CODE HERE" in t for t in texts)


def test_student_exercise_cells_report_not_implemented(student):
    dst, _ = student
    for path in EXERCISE_NOTEBOOKS:
        cells = _load(dst / path.name)["cells"]
        ns = _run_cells([c for c in cells if "exercise" in _tags(c)])
        for c in cells:
            if "check" in _tags(c):
                name = c["metadata"]["sslkit"]["exercise"]
                res = ex.check(name, ns[name], verbose=False)
                assert res.status == "not implemented", (path.name, name)


@pytest.mark.parametrize("marker", ["###BEGIN SOLUTION", "## BEGIN SOLUTION", "### begin solution",
                                    "# END SOLUTION", "### BEGIN  SOLUTION", "#### END SOLUTIONS"])
def test_near_miss_markers_are_refused_with_cell_and_line(tmp_path, marker):
    nb = _load(NOTEBOOKS / "02_contrastive_pairs.ipynb")
    i = next(i for i, c in enumerate(nb["cells"]) if "exercise" in _tags(c))
    lines = _src(nb["cells"][i]).split("\n")
    j = next(j for j, line in enumerate(lines) if line.strip() == BEGIN)
    lines[j + 1] = "    " + marker
    nb["cells"][i]["source"] = "\n".join(lines)
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "02.ipynb").write_text(json.dumps(nb))
    with pytest.raises(StripError, match=rf"02.ipynb cell {i}, line {j + 2}: .*looks like a solution marker"):
        ex.strip(tmp_path / "src", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_output_folder_inside_the_source_is_refused(tmp_path):
    src = tmp_path / "nb"
    src.mkdir()
    (src / "a.ipynb").write_text(json.dumps({"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    for dst in (src, src / "student", src / "x" / "y"):
        with pytest.raises(ValueError, match="inside the source folder"):
            ex.strip(src, dst)
    with pytest.raises(ValueError, match="inside the source folder"):
        ex.strip(src / "a.ipynb", src / "student")
    assert [p.name for p in src.iterdir()] == ["a.ipynb"]


def test_a_solution_left_behind_is_caught_and_the_copy_deleted(tmp_path, monkeypatch):
    monkeypatch.setattr(strip_module, "strip_source", lambda source, where="": source.replace(BEGIN, "# begin"))
    with pytest.raises(StripError, match="solution text remains after stripping"):
        ex.strip(NOTEBOOKS / "05_probing.ipynb", tmp_path)
    assert not (tmp_path / "05_probing.ipynb").exists()


def test_only_one_exercise(tmp_path):
    done = ex.strip(NOTEBOOKS, tmp_path, only="moco_loss")
    assert [d.path.name for d in done] == ["02_contrastive_pairs.ipynb"] and done[0].exercises == ["moco_loss"]
    assert done[0].derivations == 2 and done[0].dropped == 4   # nt_xent's text, solution, "run" text, check
    nb = _load(tmp_path / "02_contrastive_pairs.ipynb")
    text = "\n".join(_src(c) for c in nb["cells"])
    assert "def moco_loss" in text and "def nt_xent" not in text and "check_nt_xent" not in text
    assert "masked_fill" not in text                        # nt_xent's derivations are still replaced
    assert nb["metadata"]["sslkit"]["exercises"] == {"moco_loss": 2}
    with pytest.raises(ValueError, match="only='nope'"):
        ex.strip(NOTEBOOKS, tmp_path / "x", only="nope")
    with pytest.raises(ValueError, match="no notebook under .* contains that exercise"):
        ex.strip(NOTEBOOKS / "01_masking.ipynb", tmp_path / "y", only="moco_loss")


def test_graded_and_nbgrader_copies(tmp_path):
    ex.strip(NOTEBOOKS / "03_no_negatives.ipynb", tmp_path, nbgrader=True)
    cells = _load(tmp_path / "03_no_negatives.ipynb")["cells"]
    solutions = [c for c in cells if "exercise" in _tags(c)]
    checks = [c for c in cells if "check" in _tags(c)]
    assert len(solutions) == len(checks) == 3
    for c in solutions:
        md = c["metadata"]["nbgrader"]
        assert md["solution"] is True and md["grade"] is False and md["locked"] is False
        assert md["schema_version"] == 3 and md["grade_id"] == c["metadata"]["sslkit"]["exercise"]
    for c in checks:
        name, md = c["metadata"]["sslkit"]["exercise"], c["metadata"]["nbgrader"]
        assert md["grade"] is True and md["solution"] is False and md["locked"] is True
        assert md["points"] == EXERCISES[name].points and md["grade_id"] == f"check_{name}"
        assert _src(c) == f"sslkit.exercises.check_{name}({name}, raise_error=True)"
    ids = [c["metadata"]["nbgrader"]["grade_id"] for c in solutions + checks]
    assert len(set(ids)) == len(ids)
    # A graded copy's check cell raises while the exercise is unsolved.
    ns = _run_cells(solutions)
    with pytest.raises(ex.ExerciseFailed, match="not implemented yet"):
        exec(_src(checks[0]), ns)


def test_strip_source_scaffold_and_errors():
    src = "x = 1\ndef nt_xent(z1, z2):\n    '''doc'''\n    ### BEGIN SOLUTION\n    return z1\n    ### END SOLUTION\ny = 2\n"
    assert ex.strip_source(src) == ("x = 1\ndef nt_xent(z1, z2):\n    '''doc'''\n    # YOUR CODE HERE\n"
                                    f"    # {EXERCISES['nt_xent'].shapes}\n"
                                    "    raise NotImplementedError(\"Exercise: implement nt_xent\")\ny = 2\n")
    assert "# YOUR CODE HERE\n    raise NotImplementedError(\"Exercise: implement helper\")" in ex.strip_source(
        src.replace("nt_xent", "helper"))   # not an exercise: no shapes line
    for bad, msg in (("### BEGIN SOLUTION\nx\n", "never closed"), ("x\n### END SOLUTION\n", "line 2: .* without"),
                     ("### BEGIN SOLUTION\n### BEGIN SOLUTION\n### END SOLUTION\n", "line 2: nested")):
        with pytest.raises(StripError, match=msg):
            ex.strip_source(bad)


def test_cli_strip_reports_blocks_per_notebook(capsys, tmp_path):
    assert main(["exercises", "strip", str(NOTEBOOKS), str(tmp_path / "out"), "--only", "pca"]) == 0
    out = capsys.readouterr().out
    assert "06_feature_explorer.ipynb -> " in out and "1 solution block removed (pca)" in out
    assert "2 derivation cells replaced" in out and "wrote 1 student notebook(s)" in out
    with pytest.raises(SystemExit) as err:
        main(["exercises", "strip", str(NOTEBOOKS), str(NOTEBOOKS / "student")])
    assert err.value.code == 2 and "inside the source folder" in capsys.readouterr().err


# ---- grading -------------------------------------------------------------------------------------
def _submission(tmp_path, student):
    """A student copy of 06 with: alignment right, uniformity with a typical mistake, pca left as handed
    out, dino_teacher stuck in a loop, update_center's cell deleted, and a magic in a cell."""
    dst, _ = student
    nb = _load(dst / "06_feature_explorer.ipynb")
    answers = {
        "alignment": "%time x = 1\ndef alignment(z1, z2, alpha=2.0):\n"
                     "    a, b = F.normalize(z1, dim=1), F.normalize(z2, dim=1)\n"
                     "    return (a - b).pow(2).sum(1).pow(alpha / 2).mean()\n",
        "uniformity": "def uniformity(z, t=2.0):\n    z = F.normalize(z, dim=1)\n"
                      "    return torch.exp(-t * torch.cdist(z, z).pow(2)).mean().log()\n",
        "dino_teacher": "def dino_teacher(teacher_logits, center, temperature=0.04):\n    while True:\n        pass\n",
    }
    cells = []
    for c in nb["cells"]:
        name = c.get("metadata", {}).get("sslkit", {}).get("exercise")
        if "exercise" in _tags(c) and name == "update_center":
            continue
        if "exercise" in _tags(c) and name in answers:
            c["source"] = answers[name]
        cells.append(c)
    nb["cells"] = cells
    path = tmp_path / "alice.ipynb"
    path.write_text(json.dumps(nb))
    return path


def test_grade_a_submission(tmp_path, student, capsys):
    path = _submission(tmp_path, student)
    assert main(["exercises", "grade", str(path), "--timeout", "5", "--json", str(tmp_path / "scores.json")]) == 0
    table = capsys.readouterr().out
    scores = json.loads((tmp_path / "scores.json").read_text())
    assert scores["timeout_s"] == 5.0 and len(scores["submissions"]) == 1
    sub = scores["submissions"][0]
    got = {e["exercise"]: e for e in sub["exercises"]}
    assert list(got) == ["pca", "alignment", "uniformity", "dino_teacher", "update_center"]   # notebook order
    assert got["alignment"]["status"] == "passed" and got["alignment"]["score"] == 1.0
    u = got["uniformity"]
    assert u["status"] == "failed" and 0 < u["score"] < 1 and u["hint"] == EXERCISES["uniformity"].mistakes[
        "self-pairs included"].hint and u["cases_passed"] < u["cases"]
    assert got["pca"]["status"] == "not implemented" and got["pca"]["score"] == 0
    assert got["dino_teacher"]["status"] == "timeout" and "5 s" in got["dino_teacher"]["error"]
    assert got["update_center"]["status"] == "missing" and got["update_center"]["score"] == 0
    assert sub["max_score"] == 7 and sub["score"] == pytest.approx(1 + u["score"])
    assert "uniformity" in table and f"{sub['score']:5.2f} / 7" in table and "timeout" in table


def test_grade_solutions_full_marks_and_all_or_nothing(tmp_path, capsys):
    results = ex.grade([NOTEBOOKS / "05_probing.ipynb"], timeout=60)
    assert [e.status for e in results[0].exercises] == ["passed", "passed"] and results[0].score == 5
    # All or nothing: a failing exercise scores 0 rather than its share of passed checks.
    nb = _load(NOTEBOOKS / "05_probing.ipynb")
    for c in nb["cells"]:
        if "exercise" in _tags(c) and c["metadata"]["sslkit"]["exercise"] == "knn_predict":
            c["source"] = _src(c).replace("(top_sim / temperature).exp()", "torch.ones_like(top_sim)")
    (tmp_path / "bob.ipynb").write_text(json.dumps(nb))
    partial, strict = (ex.grade([tmp_path / "bob.ipynb"], all_or_nothing=flag)[0] for flag in (False, True))
    assert partial.exercises[0].status == strict.exercises[0].status == "failed"
    assert 0 < partial.exercises[0].score < 3 and strict.exercises[0].score == 0
    assert partial.exercises[0].hint == EXERCISES["knn_predict"].mistakes["unweighted votes"].hint


def test_grade_bad_input(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("hi")
    (tmp_path / "empty.ipynb").write_text(json.dumps({"cells": [], "metadata": {}, "nbformat": 4,
                                                       "nbformat_minor": 5}))
    for args, msg in (([str(tmp_path / "notes.txt")], "not an .ipynb file"),
                      ([str(tmp_path / "empty.ipynb")], "no exercises found"),
                      ([str(tmp_path / "missing.ipynb")], "not an .ipynb file"),
                      ([str(NOTEBOOKS / "05_probing.ipynb"), "--timeout", "0"], "--timeout")):
        with pytest.raises(SystemExit) as err:
            main(["exercises", "grade", *args])
        assert err.value.code == 2 and msg in capsys.readouterr().err


# ---- the instructor pack -------------------------------------------------------------------------
def test_instructor_pack_covers_every_exercise_mistake_and_question():
    text = (NOTEBOOKS / "INSTRUCTORS.md").read_text(encoding="utf-8")
    mistakes, answers = text.split("## Answers to")
    mistakes = " ".join(mistakes.split())   # markdown wraps lines anywhere
    for name, e in EXERCISES.items():
        assert f"`{name}(" in mistakes, name
        for key in e.mistakes:
            assert f"*{key}*" in mistakes, (name, key)
    for path in EXERCISE_NOTEBOOKS:
        prose = "\n".join(_src(c) for c in _load(path)["cells"] if c["cell_type"] == "markdown")
        questions = re.findall(r"^\d+\. ", prose.split("### More to try")[1], re.M)
        section = answers.split(f"\n### {path.stem[:2]} ")[1].split("\n### ")[0]
        assert len(re.findall(r"^\d+\. \*\*", section, re.M)) == len(questions) > 0, path.name
