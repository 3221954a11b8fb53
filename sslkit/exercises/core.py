"""Machinery shared by the exercise checkers: run a student's function on named cases, compare
with the reference, and collect specific, friendly feedback.

A checker never stops at a bare ``assert``: each failure says *which* case, *what* was expected and
*what* came back (shape, dtype, device or value), and - when the output matches a known typical
mistake - a hint naming that mistake.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch


class ExerciseFailed(AssertionError):
    """Raised by ``check(..., raise_error=True)`` when an exercise does not pass."""

    def __init__(self, result: CheckResult) -> None:
        super().__init__(result.report())
        self.result = result


class NotImplementedYet(Exception):
    """Internal: the student's function still raises NotImplementedError; stop checking."""


@dataclass
class CaseResult:
    case: str
    passed: bool
    message: str = ""
    hint: str = ""


@dataclass
class CheckResult:
    """Outcome of one exercise check. Truthy when every case passed."""

    exercise: str
    cases: list[CaseResult] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return bool(self.cases) and all(c.passed for c in self.cases)

    @property
    def failures(self) -> list[CaseResult]:
        return [c for c in self.cases if not c.passed]

    def __bool__(self) -> bool:
        return self.passed

    def report(self) -> str:
        """The human-readable verdict: one line per case, then a summary line."""
        lines = []
        for c in self.cases:
            mark = "✅" if c.passed else "❌"
            lines.append(f"  {mark} {c.case}" + (f": {c.message}" if c.message else ""))
            if c.hint:
                lines.append(f"     hint: {c.hint}")
        n_ok = sum(c.passed for c in self.cases)
        head = (f"✅ {self.exercise}: all {n_ok} checks passed" if self.passed else
                f"❌ {self.exercise}: {n_ok}/{len(self.cases)} checks passed")
        return "\n".join([head, *lines])

    def __repr__(self) -> str:  # short, so a bare `result` in a notebook does not repeat the report
        n_ok = sum(c.passed for c in self.cases)
        return f"CheckResult({self.exercise!r}, passed={self.passed}, {n_ok}/{len(self.cases)} cases)"


class Reporter:
    """Collects case results for one exercise (used by the individual checkers)."""

    def __init__(self, exercise: str) -> None:
        self.result = CheckResult(exercise)

    def ok(self, case: str, message: str = "") -> bool:
        self.result.cases.append(CaseResult(case, True, message))
        return True

    def fail(self, case: str, message: str, hint: str = "") -> bool:
        self.result.cases.append(CaseResult(case, False, message, hint))
        return False

    def call(self, case: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[bool, Any]:
        """Run ``fn``; (True, output) or record why it failed and return (False, None)."""
        try:
            return True, fn(*args, **kwargs)
        except NotImplementedError as err:
            raise NotImplementedYet(str(err)) from None
        except Exception as err:  # report any other error as this case's failure
            self.fail(case, f"raised {type(err).__name__}: {err}")
            return False, None

    def compare(self, case: str, got: Any, expected: torch.Tensor, *, what: str = "output",
                atol: float = 1e-5, rtol: float = 1e-4,
                mistakes: Mapping[str, torch.Tensor] | None = None, check_dtype: bool = True) -> bool:
        """Compare a tensor with the reference; on mismatch name the case and the difference."""
        problem = describe_mismatch(got, expected, what=what, atol=atol, rtol=rtol,
                                    check_dtype=check_dtype)
        if problem is None:
            return self.ok(case)
        return self.fail(case, problem, diagnose(got, mistakes or {}, atol=atol, rtol=rtol))


def describe_mismatch(got: Any, expected: torch.Tensor, *, what: str = "output", atol: float = 1e-5,
                      rtol: float = 1e-4, check_dtype: bool = True) -> str | None:
    """None if ``got`` matches ``expected``; otherwise a specific sentence saying how it differs."""
    if not isinstance(got, torch.Tensor):
        return f"{what} should be a torch.Tensor; got {type(got).__name__}"
    if got.shape != expected.shape:
        return f"wrong {what} shape: expected {_shape(expected)}, got {_shape(got)}"
    if got.device != expected.device:
        return f"wrong device for {what}: expected {expected.device}, got {got.device}"
    if check_dtype and got.dtype != expected.dtype:
        return f"wrong dtype for {what}: expected {expected.dtype}, got {got.dtype}"
    g, e = got.detach(), expected.detach()
    if e.dtype == torch.bool or not e.is_floating_point():
        bad = g != e
    else:
        g, e = g.to(torch.float64), e.to(torch.float64)
        bad = ~torch.isclose(g, e, atol=atol, rtol=rtol, equal_nan=False)
    if not bad.any():
        return None
    if e.ndim == 0:
        return f"wrong value: expected {_fmt(e)}, got {_fmt(g)}"
    idx = tuple(int(i) for i in bad.nonzero()[0])
    n_bad = int(bad.sum())
    return (f"wrong {what} values at {n_bad} of {bad.numel()} positions; first at index {idx}: "
            f"expected {_fmt(e[idx])}, got {_fmt(g[idx])}")


def diagnose(got: Any, mistakes: Mapping[str, torch.Tensor], *, atol: float = 1e-5,
             rtol: float = 1e-4) -> str:
    """The hint of the first known mistake whose output equals ``got`` ('' if none does)."""
    if not isinstance(got, torch.Tensor):
        return ""
    for hint, wrong in mistakes.items():
        if (wrong.shape == got.shape and wrong.dtype == got.dtype
                and describe_mismatch(got, wrong, atol=atol, rtol=rtol) is None):
            return hint
    return ""


def _shape(t: torch.Tensor) -> str:
    return str(tuple(t.shape))


def _fmt(t: torch.Tensor) -> str:
    v = t.item()
    return f"{v:.6g}" if isinstance(v, float) else str(v)


def gradient_case(r: Reporter, case: str, fn: Callable[..., Any], ref: Callable[..., Any],
                  inputs: list[torch.Tensor], *rest: Any, atol: float = 1e-5, **kw: Any) -> None:
    """The student's scalar output must be differentiable with the reference gradients."""
    mine = [t.detach().clone().requires_grad_(True) for t in inputs]
    theirs = [t.detach().clone().requires_grad_(True) for t in inputs]
    ok, out = r.call(case, fn, *mine, *rest, **kw)
    if not ok:
        return
    if not isinstance(out, torch.Tensor) or not out.requires_grad:
        r.fail(case, "the output carries no gradient (requires_grad=False)",
               "build it from torch operations on the inputs; avoid .detach(), .item(), .numpy() "
               "or torch.no_grad() inside the function")
        return
    ref(*theirs, *rest, **kw).sum().backward()
    try:
        out.sum().backward()
    except RuntimeError as err:
        r.fail(case, f"backward() failed: {err}")
        return
    for i, (a, b) in enumerate(zip(mine, theirs)):
        if a.grad is None:
            r.fail(case, f"gradient missing for input #{i + 1}",
                   "every input should influence the output; check for .detach() calls")
            return
        problem = describe_mismatch(a.grad, b.grad, what=f"gradient of input #{i + 1}", atol=atol)
        if problem:
            r.fail(case, problem)
            return
    r.ok(case)
