"""The common shape of every explorer: controls on top, one rendered view below.

An :class:`Explorer` is an ``ipywidgets.VBox``: ``children[0]`` holds the controls, ``children[1]``
the view (an ``ipywidgets.Image`` with PNG bytes or an ``ipywidgets.HTML``). Moving a control calls
:meth:`Explorer.update`, which re-renders the view - so tests (and curious students) can drive it
programmatically::

    w = masking_explorer(images)
    w.controls["mask_ratio"].value = 0.5     # the view re-renders
    png = w.view.value                        # bytes of the PNG now shown

Besides the live widget, the explorer offers a static ``image/png`` (or ``text/html``) rendering of
its current view, so an executed notebook still reads well on a web viewer without a kernel.
"""
from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

import ipywidgets as widgets

from sslkit.widgets.render import display_width


class Explorer(widgets.VBox):
    """Controls + one view, re-rendered by ``render()`` whenever a control changes."""

    def __init__(self, controls: dict[str, widgets.Widget], render: Callable[[], bytes | str],
                 html: bool = False, title: str = "") -> None:
        self.controls = controls
        self._render = render
        self.view = widgets.HTML() if html else widgets.Image(format="png")
        boxes = [c for c in controls.values() if isinstance(c, widgets.Widget)]
        header = [widgets.HTML(f"<b>{title}</b>")] if title else []
        control_box = widgets.HBox(boxes, layout=widgets.Layout(flex_flow="row wrap"))
        super().__init__([widgets.VBox(header + [control_box]), self.view])
        for c in controls.values():
            if isinstance(c, widgets.Button):
                continue
            c.observe(lambda change: self.update(), names="value")
        self.update()

    def update(self) -> None:
        """Re-render the view from the current control values."""
        out = self._render()
        if isinstance(self.view, widgets.Image):
            # shown at its size in page pixels (half its pixels: sharp on HiDPI screens); without a
            # width the page would stretch the image across the whole output area, blurring it
            self.view.width = str(display_width(out))
        self.view.value = out

    def _repr_mimebundle_(self, **kwargs: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        bundle = super()._repr_mimebundle_(**kwargs) or {}
        metadata: dict[str, Any] = {}
        if isinstance(self.view, widgets.Image):
            png = bytes(self.view.value)
            bundle["image/png"] = base64.b64encode(png).decode("ascii")
            metadata["image/png"] = {"width": display_width(png)}
        else:
            bundle["text/html"] = self.view.value
        return bundle, metadata


def slider(description: str, value: float, lo: float, hi: float, step: float) -> widgets.FloatSlider:
    """A compact float slider that only re-renders on release (keeps the kernel responsive)."""
    return widgets.FloatSlider(value=value, min=lo, max=hi, step=step, description=description,
                               continuous_update=False, style={"description_width": "initial"},
                               layout=widgets.Layout(width="260px"))


def seed_box(value: int = 0) -> widgets.IntText:
    return widgets.IntText(value=value, description="seed", layout=widgets.Layout(width="140px"))


def regenerate_button(seed: widgets.IntText) -> widgets.Button:
    """A button that draws new random views by advancing the seed."""
    button = widgets.Button(description="regenerate", icon="refresh", layout=widgets.Layout(width="120px"))

    def click(_: Any) -> None:
        seed.value += 1
    button.on_click(click)
    return button
