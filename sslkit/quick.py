"""Smoke-test mode: ``SSLKIT_QUICK=1`` shrinks every training run to a few steps.

The browser tests open every tutorial in a real JupyterLab and Voila to check that the widgets
render and answer; they need the notebooks to *run*, not to learn. With ``SSLKIT_QUICK=1`` in the
kernel's environment, :func:`sslkit.fit` stops after at most :data:`MAX_STEPS` steps. Numbers
printed in this mode are meaningless; never set it for teaching. For the same reason, inside IPython the
lessons' ``assert`` claims only print a note in this mode (:func:`soften_notebook_asserts`, run by
``import sslkit``), so "Run All" reaches every widget.
"""
from __future__ import annotations

import ast
import os

MAX_STEPS = 5   # enough for every code path of a method (EMA, queues, schedules) to run


def enabled() -> bool:
    """True when the environment variable ``SSLKIT_QUICK`` is set to 1/true/yes."""
    return os.environ.get("SSLKIT_QUICK", "").strip().lower() in ("1", "true", "yes")


class _SoftenAsserts(ast.NodeTransformer):
    """IPython AST transformer: ``assert test, msg`` -> print a note when ``test`` fails.

    The lessons back every stated result with an ``assert`` (nbval fails when a claim does not
    hold). In smoke-test mode runs stop after a few steps, so those claims cannot hold and must not
    stop "Run All" before the widgets render; the note says which claim went unchecked.
    """

    def visit_Assert(self, node: ast.Assert) -> ast.If:      # noqa: N802 (the ast API's name)
        msg = node.msg if node.msg is not None else ast.Constant(ast.unparse(node.test))
        note = ast.parse("print('SSLKIT_QUICK: claim not checked (few steps):', _m)").body[0]
        note.value.args[1] = msg
        soft = ast.If(test=ast.UnaryOp(op=ast.Not(), operand=node.test), body=[note], orelse=[])
        return ast.fix_missing_locations(ast.copy_location(soft, node))


def soften_notebook_asserts() -> bool:
    """In smoke-test mode inside IPython/Jupyter, make later cells' ``assert``s print instead of
    raise (see :class:`_SoftenAsserts`). Called by ``import sslkit``; returns whether it did."""
    if not enabled():
        return False
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    if shell is None:
        return False
    if not any(isinstance(t, _SoftenAsserts) for t in shell.ast_transformers):
        shell.ast_transformers.append(_SoftenAsserts())
    return True
