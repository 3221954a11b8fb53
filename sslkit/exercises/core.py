"""Machinery shared by the exercise checkers: run a student's function on named cases, compare
with the reference, and collect specific, friendly feedback.

A checker never stops at a bare ``assert``: each failure says *which* case, *what* was expected and
*what* came back (shape, dtype, device or value).

Hints. Every exercise has a catalogue of typical mistakes, each a small *wrong implementation*
(:class:`Mistake`). Every case runs the student's function, the reference and every mistake on the
same inputs. A mistake stays a suspect while its behaviour matches the student's on every case;
the cases are designed so that no two mistakes behave alike on all of them. The hint is shown only
when exactly one suspect remains - once, after the cases, and phrased as the concept to revisit,
never as the answer's code.

The student's function is run on copies of the inputs (so a function that changes its inputs in
place cannot spoil the comparison, and is told so), and under a watch for calls to the kit's own
implementation of the exercise.
"""
from __future__ import annotations

import inspect
import sys
from collections.abc import Callable, Mapping, Sequence
from contextlib import contextmanager
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


@dataclass(frozen=True)
class Mistake:
    """A typical mistake: a wrong implementation with the exercise's signature, and its hint."""

    hint: str
    fn: Callable[..., Any]


@dataclass
class CaseResult:
    case: str
    passed: bool
    message: str = ""


@dataclass
class CheckResult:
    """Outcome of one exercise check. Truthy when every case passed.

    ``status``: "passed", "failed", "not implemented" or "uses the kit".
    """

    exercise: str
    cases: list[CaseResult] = field(default_factory=list)
    status: str = "failed"
    hint: str = ""
    mistake: str = ""          # key of the one matching mistake ('' if none or several)

    @property
    def passed(self) -> bool:
        return self.status == "passed"

    @property
    def failures(self) -> list[CaseResult]:
        return [c for c in self.cases if not c.passed]

    @property
    def cases_passed(self) -> int:
        return sum(c.passed for c in self.cases)

    def __bool__(self) -> bool:
        return self.passed

    def report(self) -> str:
        """The human-readable verdict: a summary line, one line per case, then the hint (if any)."""
        if self.status == "not implemented":
            return (f"❌ {self.exercise}: not implemented yet - the function still raises "
                    f"NotImplementedError; replace that line with your code")
        n_ok = self.cases_passed
        head = (f"✅ {self.exercise}: all {n_ok} checks passed" if self.passed else
                f"❌ {self.exercise}: {n_ok}/{len(self.cases)} checks passed")
        lines = [head]
        for c in self.cases:
            lines.append(f"  {'✅' if c.passed else '❌'} {c.case}" + (f": {c.message}" if c.message else ""))
        if self.hint:
            lines.append(f"  hint: {self.hint}")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {"exercise": self.exercise, "status": self.status, "passed": self.passed,
                "cases_passed": self.cases_passed, "cases": len(self.cases), "hint": self.hint,
                "failures": [{"case": c.case, "message": c.message} for c in self.failures]}

    def __repr__(self) -> str:  # short, so a bare `result` in a notebook does not repeat the report
        return (f"CheckResult({self.exercise!r}, passed={self.passed}, "
                f"{self.cases_passed}/{len(self.cases)} cases)")


@dataclass(frozen=True)
class Raised:
    """An observation: the implementation raised instead of returning."""

    kind: str
    message: str
    unreadable: bool = False   # the case could not read what the implementation returned

    def __str__(self) -> str:
        if self.unreadable:
            return f"returned something this case cannot read ({self.message})"
        return f"raised {self.kind}: {self.message}"


class _ImplError(Exception):
    def __init__(self, raised: Raised) -> None:
        super().__init__(str(raised))
        self.raised = raised


class Reporter:
    """Runs one exercise's cases on the student's function, the reference and the mistakes.

    ``forbidden`` maps code objects of the kit's own implementations to what to call them in the
    message; ``approximations`` likewise for library functions that only approximate the answer.
    """

    def __init__(self, exercise: str, fn: Callable[..., Any], reference: Callable[..., Any],
                 mistakes: Mapping[str, Mistake] | None = None,
                 forbidden: Mapping[Any, str] | None = None,
                 approximations: Mapping[Any, str] | None = None) -> None:
        self.result = CheckResult(exercise)
        self.fn, self.reference = fn, reference
        self.mistakes = dict(mistakes or {})
        self.forbidden = dict(forbidden or {})
        self.approximations = dict(approximations or {})
        self.suspects = set(self.mistakes)
        self.kit_calls: list[str] = []
        self.approx_calls: list[str] = []
        self.mutated: list[str] = []
        self._changed: set[str] = set()
        try:
            self._arg_names = list(inspect.signature(reference).parameters)
        except (TypeError, ValueError):
            self._arg_names = []

    # -- recording ---------------------------------------------------------------------------------
    def ok(self, case: str, message: str = "") -> bool:
        self.result.cases.append(CaseResult(case, True, message))
        return True

    def fail(self, case: str, message: str) -> bool:
        self.result.cases.append(CaseResult(case, False, message))
        return False

    # -- running -----------------------------------------------------------------------------------
    def _call(self, impl: Callable[..., Any], student: bool) -> Callable[..., Any]:
        """A ``call(*args, **kwargs)`` that runs ``impl`` on copies of the tensor arguments."""
        def call(*args: Any, **kwargs: Any) -> Any:
            copies = [a.clone() if isinstance(a, torch.Tensor) else a for a in args]
            kw = {k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in kwargs.items()}
            try:
                with _watch(self.forbidden, self.approximations) if student else _nothing() as hits:
                    out = impl(*copies, **kw)
            except NotImplementedError as err:
                if student:
                    raise NotImplementedYet(str(err)) from None
                raise
            except Exception as err:  # noqa: BLE001 - any error is an observation of this implementation
                raise _ImplError(Raised(type(err).__name__, str(err).split("\n")[0][:200])) from None
            finally:
                if student:
                    self._note_calls(hits)
            changed = [self._arg_names[i] if i < len(self._arg_names) else f"#{i + 1}"
                       for i, (a, c) in enumerate(zip(args, copies))
                       if isinstance(a, torch.Tensor) and not _same(a, c, 0.0, 0.0)]
            changed += [k for k, v in kwargs.items() if isinstance(v, torch.Tensor) and not _same(v, kw[k], 0.0, 0.0)]
            self._changed.update(changed)
            if student:
                for name in changed:
                    self._note_mutation(name)
            return out
        return call

    def _note_calls(self, hits: dict[str, list[str]] | None) -> None:
        for name in (hits or {}).get("kit", []):
            if name not in self.kit_calls:
                self.kit_calls.append(name)
        for name in (hits or {}).get("approx", []):
            if name not in self.approx_calls:
                self.approx_calls.append(name)

    def _note_mutation(self, name: str) -> None:
        if name not in self.mutated:
            self.mutated.append(name)

    def _observe(self, observe: Callable[[Callable[..., Any]], Any], impl: Callable[..., Any],
                 student: bool = False) -> Any:
        """What ``observe`` sees of ``impl``; ``self._changed`` names the inputs it changed in place."""
        self._changed: set[str] = set()
        try:
            return observe(self._call(impl, student))
        except _ImplError as err:
            return err.raised
        except NotImplementedYet:
            raise
        except Exception as err:  # noqa: BLE001 - the output was not what the case could read
            return Raised("an unreadable output", f"{type(err).__name__}: {str(err).split(chr(10))[0][:200]}",
                          unreadable=True)

    # -- cases -------------------------------------------------------------------------------------
    def observe(self, case: str, observe: Callable[[Callable[..., Any]], Any],
                judge: Callable[[Any, Any], str | None],
                same: Callable[[Any, Any], bool] | None = None) -> bool:
        """One case. ``observe(call)`` runs an implementation through ``call`` and returns what to
        compare (a tensor, a tuple, or a short verdict string); ``judge(student, reference)`` is None
        when the student's observation is right, else the message. Mistakes whose observation
        differs from the student's (by ``same``) stop being suspects."""
        same = same or _same
        mine = self._observe(observe, self.fn, student=True)
        mine_changed = self._changed
        want = self._observe(observe, self.reference)
        if isinstance(want, Raised):
            raise RuntimeError(f"the reference failed on case {case!r}: {want}")
        for key in list(self.suspects):  # a suspect behaves like the student: output and side effects
            theirs = self._observe(observe, self.mistakes[key].fn)
            if not same(mine, theirs) or self._changed != mine_changed:
                self.suspects.discard(key)
        problem = str(mine) if isinstance(mine, Raised) else judge(mine, want)
        return self.fail(case, problem) if problem else self.ok(case)

    def values(self, case: str, *args: Any, what: str = "output", atol: float = 1e-5, rtol: float = 1e-4,
               check_dtype: bool = True, **kwargs: Any) -> bool:
        """Compare the output on ``args`` with the reference's, value by value."""
        return self.observe(case, lambda call: call(*args, **kwargs),
                            lambda got, want: describe_mismatch(got, want, what=what, atol=atol, rtol=rtol,
                                                                check_dtype=check_dtype),
                            lambda a, b: _same(a, b, atol, rtol))

    def gradients(self, case: str, *args: Any, wrt: Sequence[int] = (0,), atol: float = 1e-5,
                  **kwargs: Any) -> bool:
        """The output (summed) must carry the reference's gradients to the inputs at ``wrt``."""
        def observe(call: Callable[..., Any]) -> Any:
            leaves = [a.detach().clone().requires_grad_(i in wrt) if isinstance(a, torch.Tensor) else a
                      for i, a in enumerate(args)]
            out = call(*leaves, **kwargs)
            if not isinstance(out, torch.Tensor) or not out.requires_grad:
                return "no gradient"
            try:
                out.sum().backward()
            except RuntimeError as err:
                return Raised("RuntimeError", f"backward() failed: {str(err).split(chr(10))[0]}")
            return tuple(leaves[i].grad if leaves[i].grad is not None else "missing" for i in wrt)

        def judge(got: Any, want: Any) -> str | None:
            if got == "no gradient":
                return "the output carries no gradient (requires_grad=False)"
            for i, g, w in zip(wrt, got, want):
                name = self._arg_names[i] if i < len(self._arg_names) else f"input #{i + 1}"
                if isinstance(g, str):
                    return f"no gradient reaches {name}"
                problem = describe_mismatch(g, w, what=f"gradient of {name}", atol=atol)
                if problem:
                    return problem
            return None
        return self.observe(case, observe, judge, lambda a, b: _same(a, b, atol, 1e-4))

    # -- verdict -----------------------------------------------------------------------------------
    def finish(self) -> CheckResult:
        """Add the whole-function cases (inputs left alone, own implementation) and the hint."""
        res = self.result
        if self.mutated:
            self.fail("leaves its inputs unchanged", f"the function changed {', '.join(self.mutated)} "
                      f"in place; the caller's tensors must stay as they were (the checks above used copies)")
        for name in self.approx_calls:
            self.fail("computes the exact answer", f"it calls {name}, a randomised approximation whose "
                      f"answer is close to, but not exactly, the exact one")
        if self.kit_calls:
            self.fail("written by you", f"it calls {', '.join(self.kit_calls)}, the kit's own "
                      f"implementation; the exercise is to write it yourself from torch operations")
            res.status = "uses the kit"
            return res
        res.status = "passed" if res.cases and all(c.passed for c in res.cases) else "failed"
        if res.status == "failed" and len(self.suspects) == 1 and not self.approx_calls:
            res.mistake = next(iter(self.suspects))
            res.hint = self.mistakes[res.mistake].hint
        return res


# ---- helpers for the checkers --------------------------------------------------------------------
def variant(fn: Callable[..., Any], **options: Any) -> Callable[..., Any]:
    """``fn`` with keyword ``options`` fixed: one deliberate deviation, for a mistake catalogue."""
    def wrong(*args: Any, **kwargs: Any) -> Any:
        return fn(*args, **kwargs, **options)
    return wrong


def rand(*shape: int, seed: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Standard normal values from their own seeded generator (cases never touch the global RNG)."""
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


# ---- comparison ----------------------------------------------------------------------------------
def _same(a: Any, b: Any, atol: float = 1e-5, rtol: float = 1e-4) -> bool:
    """Equal observations: tensors of one shape and dtype with close values (NaN equals NaN),
    sequences element by element, anything else by ``==``."""
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        if not (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor)):
            return False
        if a.shape != b.shape or a.dtype != b.dtype:
            return False
        a, b = a.detach().cpu(), b.detach().cpu()
        if not a.is_floating_point():
            return torch.equal(a, b)
        return bool(torch.isclose(a.double(), b.double(), atol=atol, rtol=rtol, equal_nan=True).all())
    if isinstance(a, (tuple, list)) or isinstance(b, (tuple, list)):
        return (isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)) and len(a) == len(b)
                and all(_same(x, y, atol, rtol) for x, y in zip(a, b)))
    try:
        return bool(a == b) and type(a) is type(b)
    except Exception:  # noqa: BLE001 - incomparable observations are different
        return False


def describe_mismatch(got: Any, expected: torch.Tensor, *, what: str = "output", atol: float = 1e-5,
                      rtol: float = 1e-4, check_dtype: bool = True) -> str | None:
    """None if ``got`` matches ``expected``; otherwise a specific sentence saying how it differs."""
    if not isinstance(got, torch.Tensor):
        return f"{what} should be a torch.Tensor; got {type(got).__name__}"
    if got.shape != expected.shape:
        return f"wrong {what} shape: expected {tuple(expected.shape)}, got {tuple(got.shape)}"
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
    return (f"wrong {what} values at {int(bad.sum())} of {bad.numel()} positions; first at index {idx}: "
            f"expected {_fmt(e[idx])}, got {_fmt(g[idx])}")


def _fmt(t: torch.Tensor) -> str:
    v = t.item()
    return f"{v:.6g}" if isinstance(v, float) else str(v)


# ---- watching for the kit's own implementation ---------------------------------------------------
@contextmanager
def _nothing():
    yield None


@contextmanager
def _watch(forbidden: Mapping[Any, str], approximations: Mapping[Any, str]):
    """Record calls of the given code objects while the student's function runs (sys.setprofile:
    it sees every Python-level call, however the function was imported or named)."""
    hits: dict[str, list[str]] = {"kit": [], "approx": []}
    if not forbidden and not approximations:
        yield hits
        return

    kit = {id(code): name for code, name in forbidden.items()}   # by identity: an equal copy is the student's
    approx = {id(code): name for code, name in approximations.items()}

    def profile(frame: Any, event: str, arg: Any) -> None:
        if event == "call":
            key = id(frame.f_code)
            if key in kit:
                hits["kit"].append(kit[key])
            elif key in approx:
                hits["approx"].append(approx[key])

    previous = sys.getprofile()
    sys.setprofile(profile)
    try:
        yield hits
    finally:
        sys.setprofile(previous)
