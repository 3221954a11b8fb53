"""Checked exercises: students implement key pieces; these checkers give specific feedback.

    >>> from sslkit.exercises import check
    >>> check("nt_xent", my_nt_xent)          # prints a ✅/❌ report, returns a CheckResult (truthy if passed)
    >>> sslkit.exercises.check_nt_xent(my_nt_xent, raise_error=True)   # raises ExerciseFailed instead
    >>> sslkit.exercises.strip("notebooks/", "student/")               # solutions removed, outputs cleared

Each checker runs the function on named cases and compares with the kit's reference, naming the
case and what differs (shape, dtype, device, value, missing gradient); output matching a typical
mistake earns a hint. A function that still raises ``NotImplementedError`` is "not implemented yet".

Exercises (notebook): random_masking (01), nt_xent (02), ema_update (03), patchify and masked_mse
(04), knn_predict (05), alignment, uniformity and pca (06). Signatures are those of
:mod:`sslkit.exercises.reference`.
"""
from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from sslkit import checks
from sslkit.exercises import reference
from sslkit.exercises.check_losses import check_alignment as _alignment
from sslkit.exercises.check_losses import check_masked_mse as _masked_mse
from sslkit.exercises.check_losses import check_nt_xent as _nt_xent
from sslkit.exercises.check_losses import check_uniformity as _uniformity
from sslkit.exercises.check_ops import check_ema_update as _ema_update
from sslkit.exercises.check_ops import check_knn_predict as _knn_predict
from sslkit.exercises.check_ops import check_patchify as _patchify
from sslkit.exercises.check_ops import check_pca as _pca
from sslkit.exercises.check_ops import check_random_masking as _random_masking
from sslkit.exercises.core import CaseResult, CheckResult, ExerciseFailed, NotImplementedYet, Reporter
from sslkit.exercises.strip import strip, strip_source

_CHECKERS: dict[str, Callable[[Callable[..., Any], Reporter], None]] = {
    "random_masking": _random_masking,
    "nt_xent": _nt_xent,
    "ema_update": _ema_update,
    "patchify": _patchify,
    "masked_mse": _masked_mse,
    "knn_predict": _knn_predict,
    "alignment": _alignment,
    "uniformity": _uniformity,
    "pca": _pca,
}


def names() -> list[str]:
    """The exercises that have a checker."""
    return list(_CHECKERS)


def check(name: str, fn: Callable[..., Any], *, raise_error: bool = False, verbose: bool = True) -> CheckResult:
    """Check the student's ``fn`` for exercise ``name``.

    Prints a ✅/❌ report (unless ``verbose=False``) and returns a :class:`CheckResult`, truthy when
    every case passed. With ``raise_error=True`` a failure raises :class:`ExerciseFailed`.
    """
    checks.choice("name", name, names())
    if not callable(fn):
        raise ValueError(f"fn={fn!r} must be a function (the one you wrote for {name!r})")
    r = Reporter(name)
    try:
        _CHECKERS[name](fn, r)
    except NotImplementedYet:
        r.result.cases = [CaseResult("implemented", False, "not implemented yet: the function still "
                                     "raises NotImplementedError",
                                     "replace the `raise NotImplementedError(...)` line with your code")]
    if verbose:
        print(r.result.report())
    if raise_error and not r.result.passed:
        raise ExerciseFailed(r.result)
    return r.result


check_random_masking = partial(check, "random_masking")
check_nt_xent = partial(check, "nt_xent")
check_ema_update = partial(check, "ema_update")
check_patchify = partial(check, "patchify")
check_masked_mse = partial(check, "masked_mse")
check_knn_predict = partial(check, "knn_predict")
check_alignment = partial(check, "alignment")
check_uniformity = partial(check, "uniformity")
check_pca = partial(check, "pca")

__all__ = ["check", "names", "strip", "strip_source", "reference", "CheckResult", "CaseResult",
           "ExerciseFailed", *[f"check_{n}" for n in _CHECKERS]]
