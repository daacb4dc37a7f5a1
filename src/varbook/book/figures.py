"""One look for every figure of the book: legible on a laptop and on a phone, at most three panels a row.

:func:`use_style` sets matplotlib's defaults (font sizes that stay legible when the figure is
scaled to the page's width, a resolution that stays sharp on a phone, legends that do not hide
the data behind an opaque box); :func:`~varbook.book.start` calls it, so every chapter draws with
it. :func:`panels` lays ``n`` panels out in rows of at most :data:`MAX_PANELS_PER_ROW`, since a
row of five panels shrinks each to a thumbnail on a phone.

Every figure cell of a chapter carries a caption and a name in its ``mystnb.figure`` options, so
that the page numbers it (*Figure 3*) and the text can refer to it with ``{numref}``.

>>> fig, axes = panels(5)
>>> axes.shape, fig.axes == list(axes)
((5,), True)
>>> import matplotlib.pyplot as plt; plt.close(fig)
"""

from __future__ import annotations

import math
from typing import Any

import matplotlib as mpl
import numpy as np

MAX_PANELS_PER_ROW = 3
"""The most panels side by side: a fourth makes each too small to read on a phone."""
PAGE_WIDTH_INCHES = 9.0
"""Width of a figure that fills the page's text column (three panels of 3 inches)."""

STYLE: dict[str, Any] = {
    "figure.dpi": 110,
    "savefig.dpi": 150,
    "figure.figsize": (6.0, 3.6),
    "figure.constrained_layout.use": True,
    "font.size": 11,
    "axes.titlesize": 11,
    "axes.labelsize": 11,
    "xtick.labelsize": 10,
    "ytick.labelsize": 10,
    "legend.fontsize": 9.5,
    "legend.framealpha": 0.7,
    "legend.loc": "best",
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "lines.linewidth": 1.6,
    "image.cmap": "viridis",
}
"""The book's matplotlib settings (:func:`use_style` applies them)."""


def use_style() -> None:
    """Apply :data:`STYLE` to matplotlib's defaults (the inline backend keeps the resolution)."""
    params: Any = mpl.rcParams  # matplotlib types its keys as a Literal of every setting
    params.update(STYLE)


def panels(
    n: int,
    *,
    height: float = 3.0,
    width: float | None = None,
    per_row: int = MAX_PANELS_PER_ROW,
    **subplot_kw,
):
    """A figure with ``n`` panels in rows of at most ``per_row`` (≤ :data:`MAX_PANELS_PER_ROW`).

    Returns the figure and a flat array of its ``n`` axes (grid cells beyond ``n`` are removed).
    ``height`` is the height of one row in inches, ``width`` the figure's (default: the page's
    width, 5.5 inches for a single panel); ``subplot_kw`` goes to
    :func:`matplotlib.pyplot.subplots` (``sharex``, ``sharey``, ...).
    """
    import matplotlib.pyplot as plt

    if not isinstance(n, int) or n < 1:
        raise ValueError(f"panels needs a positive number of panels, got {n!r}")
    if not 1 <= per_row <= MAX_PANELS_PER_ROW:
        raise ValueError(f"per_row must be between 1 and {MAX_PANELS_PER_ROW}, got {per_row}")
    cols = min(n, per_row)
    rows = math.ceil(n / cols)
    width = width if width is not None else (5.5 if cols == 1 else PAGE_WIDTH_INCHES)
    fig, grid = plt.subplots(rows, cols, figsize=(width, height * rows), squeeze=False, **subplot_kw)
    flat = grid.ravel()
    for ax in flat[n:]:
        ax.remove()
    return fig, np.asarray(flat[:n])
