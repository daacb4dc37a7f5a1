"""Reader notebooks: a chapter as plain Jupyter, with no MyST left and nothing of the build machine."""

import json

import pytest

from varbook import book
from varbook.book import reader

ROOT = book.project_root()
CHAPTERS = book.chapters()


def test_plain_markdown_expands_listings_citations_and_directives(tmp_path):
    (tmp_path / "mod.py").write_text('def f(x):\n    """Doc."""\n    return x + 1\n\n\ndef g():\n    pass\n')
    text = (
        "(lab)=\n# Title\n\n:::{admonition} Paper card\n:class: note\nSee {cite}`nobody2020` and {eq}`e1`.\n:::\n\n"
        "```{math}\n:label: e1\na = b\n```\n\n```{literalinclude} mod.py\n:pyobject: f\n```\n\n"
        "```python\nx = 1\n```\n"
    )
    out = reader.plain_markdown(text, tmp_path, tmp_path)
    assert "**Paper card.**" in out and "(e1)" in out and "nobody2020" in out
    assert "$$\na = b \\tag{e1}\n$$" in out
    assert 'def f(x):\n    """Doc."""\n    return x + 1\n```' in out and "def g" not in out
    assert "```python\nx = 1\n```" in out
    assert "{" not in out.replace("\\tag{e1}", "") and ":::" not in out and "(lab)=" not in out


@pytest.mark.parametrize("chapter", CHAPTERS, ids=[c.slug for c in CHAPTERS])
def test_reader_notebook_has_no_myst_left(chapter):
    nb = reader.reader_notebook(ROOT, chapter)
    text = json.dumps(nb)
    myst_left = ("{literalinclude}", "{cite}`", "{eq}`", "{math}", "{admonition}", "{ref}`", "{numref}`", ":::")
    for myst in (*myst_left, "{code-cell}"):
        assert myst not in text, f"{chapter.slug}: {myst} left in the reader notebook"
    assert str(ROOT) not in text and "injected-parameters" not in text
    assert "pip install" in nb["cells"][0]["source"]
    params = [c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(params) == 1 and "VARBOOK_PROFILE" in params[0]["source"]
    source = (ROOT / chapter.source).read_text()
    shown = sum("*Library code:" in c["source"] for c in nb["cells"] if c["cell_type"] == "markdown")
    assert text.count("*Library code:") == source.count("{literalinclude}") and shown > 0
    assert all(not c.get("outputs") for c in nb["cells"] if c["cell_type"] == "code")
    captions = [c for c in nb["cells"] if c["cell_type"] == "markdown" and c["source"].startswith("**Figure ")]
    assert len(captions) == source.count("    name: fig-"), f"{chapter.slug}: a caption under every figure"


def test_numref_reads_as_the_figure_number(tmp_path):
    text = "As {numref}`fig-a` and {numref}`Panel %s <fig-b>` show."
    assert (
        reader.plain_markdown(text, tmp_path, tmp_path, {"fig-a": 1, "fig-b": 2}) == "As Figure 1 and Panel 2 show.\n"
    )
