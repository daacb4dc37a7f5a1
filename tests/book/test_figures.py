"""Every figure of the book has a number and a caption, and at most three panels a row."""

import re

import jupytext
import matplotlib
import pytest

from varbook.book import chapters, panels, project_root, use_style
from varbook.book.figures import MAX_PANELS_PER_ROW, STYLE

matplotlib.use("Agg")
ROOT = project_root()
CHAPTERS = [c for c in chapters(ROOT)]
DRAWS = re.compile(r"plt\.show\(\)|plt\.subplots\(|panels\(|plt\.figure\(")
SUBPLOTS = re.compile(r"plt\.subplots\(\s*([^,()]+?)\s*,\s*([^,()]+?)\s*[,)]")


def figure_cells(chapter):
    nb = jupytext.read(ROOT / chapter.source)
    return [c for c in nb.cells if c.cell_type == "code" and DRAWS.search(c.source)]


@pytest.mark.parametrize("chapter", CHAPTERS, ids=[c.slug for c in CHAPTERS])
def test_every_figure_cell_has_a_caption_and_a_name(chapter):
    cells = figure_cells(chapter)
    assert cells, f"{chapter.slug} draws no figure"
    names = []
    for cell in cells:
        figure = cell.metadata.get("mystnb", {}).get("figure", {})
        first = cell.source.strip().splitlines()[0]
        assert figure.get("caption", "").strip(), f"{chapter.slug}: figure cell without a caption: {first}"
        assert str(figure.get("name", "")).startswith("fig-"), f"{chapter.slug}: figure cell without a fig- name"
        names.append(figure["name"])
        assert cell.source.count("plt.show()") <= 1, f"{chapter.slug}: one figure per cell (one caption each)"
        assert cell.source.strip().splitlines()[-1].strip() == "plt.show()", (
            f"{chapter.slug}: {figure['name']} must end with plt.show(): a last expression's value would be a "
            "second output under the same figure name"
        )
    assert len(names) == len(set(names)), f"{chapter.slug}: figure names repeat"


@pytest.mark.parametrize("chapter", CHAPTERS, ids=[c.slug for c in CHAPTERS])
def test_at_most_three_panels_a_row(chapter):
    for cell in figure_cells(chapter):
        for rows, cols in SUBPLOTS.findall(cell.source):
            assert cols.isdigit() and int(cols) <= MAX_PANELS_PER_ROW, (
                f"{chapter.slug}: plt.subplots({rows}, {cols}): use varbook.book.panels for more than "
                f"{MAX_PANELS_PER_ROW} panels or a computed count"
            )


def test_panels_wrap_rows_and_reject_bad_counts():
    import matplotlib.pyplot as plt

    fig, axes = panels(7, sharey=True)
    assert len(axes) == 7 and len(fig.axes) == 7
    assert {round(ax.get_position().x0, 2) for ax in axes}.__len__() == MAX_PANELS_PER_ROW
    plt.close(fig)
    with pytest.raises(ValueError, match="positive number"):
        panels(0)
    with pytest.raises(ValueError, match="per_row"):
        panels(4, per_row=4)


def test_style_is_applied():
    use_style()
    assert matplotlib.rcParams["font.size"] == STYLE["font.size"]
    assert matplotlib.rcParams["savefig.dpi"] >= 150
