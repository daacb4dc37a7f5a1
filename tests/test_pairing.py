"""The .md of each chapter is the source of truth; its paired .ipynb must match it and carry no outputs."""

import json

import jupytext
import pytest

from varbook import book

CHAPTERS = book.chapters()


def _cells(nb):
    return [
        (c["cell_type"], "".join(c["source"]).strip(), sorted(c.get("metadata", {}).get("tags", [])))
        for c in nb["cells"]
    ]


@pytest.mark.parametrize("chapter", CHAPTERS, ids=[c.slug for c in CHAPTERS])
def test_notebook_is_paired_and_stripped(chapter):
    root = book.project_root()
    md = jupytext.read(root / chapter.source)
    ipynb_path = (root / chapter.source).with_suffix(".ipynb")
    assert ipynb_path.exists(), f"missing {ipynb_path.name}: run jupytext --to ipynb {chapter.source}"
    ipynb = json.loads(ipynb_path.read_text())
    assert _cells(md) == _cells(ipynb), (
        f"{ipynb_path.name} is out of sync: jupytext --to ipynb --update {chapter.source}"
    )
    for cell in ipynb["cells"]:
        if cell["cell_type"] == "code":
            assert cell.get("outputs") == [] and cell.get("execution_count") is None, "outputs not stripped"


def test_chapter_anatomy():
    root = book.project_root()
    for chapter in CHAPTERS:
        nb = jupytext.read(root / chapter.source)
        code = [c for c in nb.cells if c.cell_type == "code"]
        params = code[0]
        assert {"parameters", "remove-cell"} <= set(params.metadata.get("tags", [])), chapter.slug
        assert "profile" in params.source and "seed" in params.source
        text = "\n".join(c.source for c in nb.cells)
        assert "{cite}" in text and "literalinclude" in text and "report.finish()" in text
        assert not any(line.lstrip().startswith(("%", "!")) for c in code for line in c.source.splitlines()), (
            "chapters are plain Python: no magics"
        )
