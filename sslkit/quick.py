"""Smoke-test mode: ``SSLKIT_QUICK=1`` shrinks every training run to a few steps.

The browser tests open every tutorial in a real JupyterLab and Voila to check that the widgets
render and answer; they need the notebooks to *run*, not to learn. With ``SSLKIT_QUICK=1`` in the
kernel's environment, :func:`sslkit.fit` stops after at most :data:`MAX_STEPS` steps and
:func:`sslkit.eval.label_efficiency` uses at most :data:`MAX_SEEDS` seeds. Numbers printed in this
mode are meaningless; never set it for teaching.
"""
from __future__ import annotations

import os

MAX_STEPS = 5   # enough for every code path of a method (EMA, queues, schedules) to run
MAX_SEEDS = 1   # one labelled subset per budget


def enabled() -> bool:
    """True when the environment variable ``SSLKIT_QUICK`` is set to 1/true/yes."""
    return os.environ.get("SSLKIT_QUICK", "").strip().lower() in ("1", "true", "yes")
