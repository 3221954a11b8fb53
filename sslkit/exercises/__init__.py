"""Checked exercises: students implement key pieces; these checkers give specific feedback.

    >>> from sslkit.exercises import check
    >>> check("nt_xent", my_nt_xent)          # prints a ✅/❌ report, returns a CheckResult (truthy if passed)
    >>> sslkit.exercises.check_nt_xent(my_nt_xent, raise_error=True)   # raises ExerciseFailed instead
    >>> sslkit.exercises.strip("notebooks/", "student/")               # student copies, see strip.py
    >>> sslkit.exercises.grade(["alice/02_contrastive_pairs.ipynb"])   # scores, see grade.py

Each checker runs the function on named cases and compares with a reference solution
(:mod:`sslkit.exercises.reference`), naming the case and what differs (shape, dtype, value,
gradient, a property such as "a different mask per sample"). When the function's behaviour matches
exactly one typical mistake on every case, a hint names the concept behind it (see
:mod:`sslkit.exercises.core`). A function that still raises ``NotImplementedError`` is "not
implemented yet"; one that calls the kit's own implementation of the exercise fails.

Exercises (notebook): random_masking, bert_mask (01); nt_xent, moco_loss (02); ema_update,
vicreg_variance, vicreg_covariance (03); patchify, masked_mse, mae_decoder_input (04); knn_predict,
stratified_subset (05); pca, alignment, uniformity, dino_teacher, update_center (06).
"""
from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import torch

from sslkit import checks
from sslkit.exercises import reference
from sslkit.exercises.catalog import EXERCISES, Exercise, code_objects
from sslkit.exercises.core import CaseResult, CheckResult, ExerciseFailed, Mistake, NotImplementedYet, Reporter


def names() -> list[str]:
    """The exercises that have a checker, in notebook order."""
    return list(EXERCISES)


def info(name: str) -> Exercise:
    """The catalogue entry of exercise ``name`` (notebook, points, shapes, mistakes)."""
    checks.choice("name", name, names())
    return EXERCISES[name]


def check(name: str, fn: Callable[..., Any], *, raise_error: bool = False, verbose: bool = True) -> CheckResult:
    """Check the student's ``fn`` for exercise ``name``.

    Prints a ✅/❌ report (unless ``verbose=False``) and returns a :class:`CheckResult`, truthy when
    every case passed. With ``raise_error=True`` a failure raises :class:`ExerciseFailed`. The global
    random state is left as it was.
    """
    ex = info(name)
    if not callable(fn):
        raise ValueError(f"fn={fn!r} must be a function (the one you wrote for {name!r})")
    kit = code_objects(ex.kit + (f"sslkit.exercises.reference.{name}",))
    r = Reporter(name, fn, ex.reference, ex.mistakes, forbidden=kit, approximations=code_objects(ex.approximations))
    with torch.random.fork_rng(devices=[]):
        try:
            ex.checker(r)
            result = r.finish()
        except NotImplementedYet:
            result = CheckResult(name, [CaseResult("implemented", False, "not implemented yet")],
                                 status="not implemented")
    if verbose:
        print(result.report())
    if raise_error and not result.passed:
        raise ExerciseFailed(result)
    return result


from sslkit.exercises.grade import grade  # noqa: E402 - grading runs check() in a fresh process
from sslkit.exercises.strip import strip, strip_source  # noqa: E402


def __getattr__(attr: str) -> Any:
    """``check_<name>`` for every exercise."""
    if attr.startswith("check_") and attr[6:] in EXERCISES:
        return partial(check, attr[6:])
    raise AttributeError(f"module 'sslkit.exercises' has no attribute {attr!r}")


__all__ = ["check", "names", "info", "strip", "strip_source", "grade", "reference", "CheckResult", "CaseResult",
           "ExerciseFailed", "Mistake", "Reporter", "NotImplementedYet", *[f"check_{n}" for n in EXERCISES]]
