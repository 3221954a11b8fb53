"""A callback for the resume tests: an exception (a Ctrl-C by default) at the end of one step."""
from __future__ import annotations

from sslkit.train import Callback


class RaiseAt(Callback):
    """Raise ``exc`` after step ``step``; a KeyboardInterrupt makes fit save the checkpoint and stop."""

    def __init__(self, step: int, exc: type[BaseException] = KeyboardInterrupt) -> None:
        self.step, self.exc = step, exc

    def on_step_end(self, state) -> None:
        if state.step == self.step:
            raise self.exc()
