"""Every chapter reads like a lecture: code at most 40 % of its lines, no visible cell over 30 lines."""

import pytest

from varbook import book
from varbook.book import style

CHAPTERS = book.chapters()


def test_measure_counts_prose_visible_and_hidden_code():
    text = (
        "---\nkernelspec: {}\n---\n# Title\n\nProse.\n\n"
        "```{code-cell} ipython3\n:tags: [hide-input]\n\nplot()\nshow()\n```\n\n"
        "```{code-cell} ipython3\na = 1\n\nb = 2\n```\n"
    )
    shape = style.measure_text(text)
    assert (shape.prose_lines, shape.visible_code_lines, shape.hidden_code_lines) == (2, 2, 2)
    assert shape.largest_visible_cell == 2 and shape.code_share == 0.5
    yaml_options = (
        "# T\n\nProse.\n\n```{code-cell} ipython3\n---\nmystnb:\n  figure:\n    caption: A long\n"
        "      caption.\n    name: fig-x\ntags: [hide-input]\n---\nplot()\n```\n\n"
        "```{code-cell} ipython3\n---\nmystnb: {figure: {name: fig-y}}\n---\nshown()\n```\n"
    )
    shape = style.measure_text(yaml_options)
    assert (shape.prose_lines, shape.visible_code_lines, shape.hidden_code_lines) == (2, 1, 1)


@pytest.mark.parametrize("chapter", CHAPTERS, ids=[c.slug for c in CHAPTERS])
def test_chapter_shape(chapter):
    shape = style.measure(book.project_root() / chapter.source)
    assert shape.code_share <= style.MAX_CODE_SHARE, f"{chapter.slug}: code share {shape.code_share:.2f}"
    assert shape.largest_visible_cell <= style.MAX_VISIBLE_CELL, (
        f"{chapter.slug}: a visible cell of {shape.largest_visible_cell} lines"
    )
