"""The shape of a chapter as a reader meets it: how much of it is code, and how long its cells are.

A chapter reads like a lecture: prose first, short cells, long computations in the library.
:func:`measure` counts the non-blank lines of a chapter's MyST source (front matter and cell
options aside). *Visible* code cells are those a reader sees on the page; cells tagged
``remove-cell``, ``remove-input``, ``hide-input`` or ``hide-cell`` (plotting, parameters) are
counted apart.

>>> shape = measure_text("---\\nkernelspec: {}\\n---\\n# T\\n\\nSome prose.\\n\\n```{code-cell} ipython3\\nx = 1\\n```\\n")
>>> shape.prose_lines, shape.visible_code_lines, shape.code_share
(2, 1, 0.3333333333333333)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

MAX_CODE_SHARE = 0.40
"""Largest share of visible code lines among a chapter's non-blank lines."""
MAX_VISIBLE_CELL = 30
"""Largest number of non-blank lines in one visible code cell."""
HIDING_TAGS = ("remove-cell", "remove-input", "hide-input", "hide-cell")
"""Cell tags that keep a cell's code off the page (or folded)."""


@dataclass(frozen=True)
class Shape:
    """Line counts of one chapter."""

    prose_lines: int
    visible_code_lines: int
    hidden_code_lines: int
    largest_visible_cell: int

    @property
    def code_share(self) -> float:
        """Visible code lines over prose and visible code lines."""
        total = self.prose_lines + self.visible_code_lines
        return self.visible_code_lines / total if total else 0.0


def measure_text(text: str) -> Shape:
    """The :class:`Shape` of a MyST notebook given as text."""
    if text.startswith("---\n"):
        text = text.split("\n---\n", 1)[1]
    prose = visible = hidden = largest = 0
    in_cell, in_options, in_yaml, hide, size = False, False, False, False, 0
    for line in text.split("\n"):
        if not in_cell and line.startswith("```{code-cell}"):
            in_cell, in_options, in_yaml, hide, size = True, True, False, False, 0
            continue
        if in_cell:
            if in_options and size == 0 and line.strip() == "---":  # a YAML block of options opens or closes
                in_yaml = not in_yaml
                in_options = in_yaml
                if not in_yaml:
                    continue
            if in_yaml:
                hide = hide or any(tag in line for tag in HIDING_TAGS)
                continue
            if line.startswith("```"):
                in_cell = False
                if hide:
                    hidden += size
                else:
                    visible += size
                    largest = max(largest, size)
            elif in_options and line.startswith(":"):
                hide = hide or any(tag in line for tag in HIDING_TAGS)
            else:
                in_options = False
                size += bool(line.strip())
        else:
            prose += bool(line.strip())
    return Shape(prose, visible, hidden, largest)


def measure(path: Path | str) -> Shape:
    """The :class:`Shape` of the chapter source ``path`` (``book/<part>/<slug>.md``)."""
    return measure_text(Path(path).read_text(encoding="utf-8"))
