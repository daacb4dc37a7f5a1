"""Every chapter is teachable: learning goals and prerequisites in its paper card, and at least
three exercises, each with a folded solution (a text block, or code cells that run with the
chapter)."""

import re

import pytest

from varbook import book
from varbook.book import teaching

CHAPTERS = book.chapters()


@pytest.mark.parametrize("chapter", CHAPTERS, ids=[c.slug for c in CHAPTERS])
def test_chapter_has_exercises_with_solutions(chapter):
    text = (book.project_root() / chapter.source).read_text(encoding="utf-8")
    counts = teaching.count_exercises(text)
    assert counts["exercises"] >= 3, f"{chapter.slug}: {counts['exercises']} exercise(s), at least 3 wanted"
    assert counts["solutions"] == counts["exercises"], f"{chapter.slug}: {counts}"
    assert counts["open_solutions"] == 0, f"{chapter.slug}: every solution folds (:class: dropdown)"
    labels = re.findall(r"\{exercise\}\s*\n:label: (\S+)", text)
    solved = re.findall(r"\{solution(?:-start)?\} (\S+)", text)
    assert len(labels) == counts["exercises"] and sorted(labels) == sorted(solved), f"{chapter.slug}: {labels} {solved}"
    assert "## Exercises" in text and text.index("## Exercises") < text.index("## Notes")
    code_solution = re.search(r"\{solution-start\}.*?\{code-cell\}.*?\{solution-end\}", text, re.S)
    assert code_solution, f"{chapter.slug}: at least one solution is code that runs with the chapter"


@pytest.mark.parametrize("chapter", CHAPTERS, ids=[c.slug for c in CHAPTERS])
def test_paper_card_has_goals_and_prerequisites(chapter):
    text = (book.project_root() / chapter.source).read_text(encoding="utf-8")
    card = text[text.index(":::{admonition} Paper card") :]
    card = card[: card.index("\n:::\n")]
    assert "**You will learn**" in card and "**Prerequisites" in card, chapter.slug
