"""Course material: exercise counting, the student edition's stripping, the map and the syllabi."""

import json

import pytest

from varbook import book
from varbook.book import site, teaching

EXERCISES = """Intro text.

:::{exercise}
:label: demo-ex-1
Why is the sky blue?
:::

:::{solution} demo-ex-1
:class: dropdown
Rayleigh scattering.
:::

````{exercise}
:label: demo-ex-2
Write code.
````
"""


def nb(*cells):
    out = []
    for kind, text in cells:
        cell = {"cell_type": kind, "metadata": {}, "source": text}
        if kind == "code":
            cell |= {"outputs": [{"output_type": "stream", "name": "stdout", "text": "secret answer"}]}
        out.append(cell)
    return {"cells": out, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}


GATED = nb(
    ("markdown", EXERCISES + "\n````{solution-start} demo-ex-2\n:class: dropdown\n````\nThe solution's prose."),
    ("code", "answer = 42"),
    ("markdown", "More solution prose.\n"),
    ("code", "assert answer == 42"),
    ("markdown", "````{solution-end}\n````\n\n## Notes\nAfter the exercises."),
)


def test_count_exercises():
    text = "".join(c["source"] for c in GATED["cells"] if c["cell_type"] == "markdown")
    assert teaching.count_exercises(text) == {"exercises": 2, "solutions": 2, "open_solutions": 0}
    assert teaching.count_exercises(":::{solution} x\nopen\n:::\n")["open_solutions"] == 1


def test_strip_solutions_removes_text_and_gated_solutions():
    out = teaching.strip_solutions(GATED)
    text = json.dumps(out)
    assert "Rayleigh" not in text and "solution" not in text and "answer" not in text
    assert "The solution's prose" not in text and "More solution prose" not in text
    assert "Why is the sky blue?" in text and "Write code." in text and "After the exercises." in text
    assert [c["cell_type"] for c in out["cells"]] == ["markdown", "markdown"]
    assert teaching.strip_solutions(nb(("markdown", "no exercises\n"))) == nb(("markdown", "no exercises\n"))
    unclosed = nb(("markdown", "````{solution-start} a\n````\n"), ("code", "x = 1"))
    with pytest.raises(ValueError, match="solution-end"):
        teaching.strip_solutions(unclosed)


def test_strip_solutions_text_keeps_a_page_without_solutions():
    page = "# Title\n\n```python\nx = 1\n```\n\n:::{note}\nkept\n:::\n"
    assert teaching.strip_solutions_text(page) == page
    assert "Rayleigh" not in teaching.strip_solutions_text(EXERCISES)


def test_the_map_lists_every_chapter_and_only_earlier_ones_as_foundations():
    bm = teaching.book_map(book.project_root())
    slugs = [c.slug for c in bm.chapters]
    assert slugs == [c.slug for c in book.chapters()]
    order = {s: i for i, s in enumerate(slugs)}
    for slug, earlier in bm.builds_on.items():
        assert all(order[e] < order[slug] for e in earlier)
    assert all(bm.uses[s] for s in slugs), "every chapter uses at least one library package"
    assert "estimators" in bm.uses["straight_through"] and "diffusion" in bm.uses["red_diff"]


def test_chapter_packages_sees_imports_names_and_listings():
    text = (
        "```{code-cell} ipython3\nimport varbook.vi as vi\nx = varbook.sde.fbm\n```\n"
        "```{literalinclude} ../../src/varbook/nn/mlp.py\n```\n"
    )
    assert teaching.chapter_packages(text, ["nn", "sde", "vi", "llm"]) == {"nn", "sde", "vi"}


def test_syllabus_covers_every_chapter_once_in_order():
    slugs = [f"c{i}" for i in range(13)]
    minutes = {s: 30 + 10 * (i % 4) for i, s in enumerate(slugs)}
    plans = teaching.syllabus(slugs, minutes)
    for plan, most in (("course", 10), ("workshop", 3)):
        groups = plans[plan]
        assert [s for g in groups for s in g] == slugs and len(groups) <= most and all(groups)
    assert teaching.syllabus(slugs[:2], minutes)["course"] == [["c0"], ["c1"]]


def test_student_edition_stage_has_no_solution(tmp_path):
    root = tmp_path / "proj"
    (root / "book" / "gradients").mkdir(parents=True)
    (root / "_toc.yml").write_text(
        "format: jb-book\nroot: book/intro\nchapters:\n  - file: book/gradients/demo\n"
        "  - file: book/reproducibility\n  - file: book/teaching\n"
    )
    (root / "_config.yml").write_text("title: t\n")
    (root / "references.bib").write_text("")
    (root / "src").mkdir()
    (root / "book" / "intro.md").write_text("# intro\n")
    (root / "book" / "reproducibility.md").write_text(f"# r\n{site.DASHBOARD_MARKER}\n")
    (root / "book" / "teaching.md").write_text(f"# t\n{site.TEACHING_MARKER}\n")
    (root / "book" / "gradients" / "demo.md").write_text(
        "---\nkernelspec:\n  name: python3\n---\n# demo\n\n```{code-cell} ipython3\nimport varbook.vi\n```\n"
    )
    executed = root / "_build" / "executed" / "smoke" / "book" / "gradients" / "demo.ipynb"
    executed.parent.mkdir(parents=True)
    executed.write_text(json.dumps(GATED))
    staged = site.stage("smoke", root, edition="student")
    text = (staged / "book" / "gradients" / "demo.ipynb").read_text()
    assert "Rayleigh" not in text and "answer" not in text and "Write code." in text
    guide = (staged / "book" / "teaching.md").read_text()
    assert "demo" in guide and (staged / "book" / site.MAP_FILE).exists()
    staged = site.stage("smoke", root, edition="instructor")
    assert "Rayleigh" in (staged / "book" / "gradients" / "demo.ipynb").read_text()
    with pytest.raises(ValueError, match="unknown edition"):
        site.stage("smoke", root, edition="teacher")
