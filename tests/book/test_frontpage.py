"""The front page and part pages: every chapter with a short title, a summary, its status and time."""

import re

from varbook import book
from varbook.book import frontpage

ROOT = book.project_root()


def test_every_chapter_has_a_short_title_and_a_summary():
    titles = frontpage.short_titles(ROOT)
    for c in book.chapters():
        assert c.docname in titles and len(titles[c.docname]) <= 45, f"{c.slug}: a short sidebar title"
        text = (ROOT / c.source).read_text(encoding="utf-8")
        line = frontpage.summary(text)
        assert 20 <= len(line) <= 160, f"{c.slug}: a one-line summary (% summary: ...) under its title"


def test_table_lists_every_chapter_with_status_from_records():
    rows = frontpage.chapter_rows(ROOT, "smoke")
    assert [r["chapter"].slug for r in rows] == [c.slug for c in book.chapters()]
    table = frontpage.chapter_table(rows)
    assert table.count("{doc}`") == len(rows)
    assert all(r["paper"] != "—" for r in rows), "every chapter cites its paper in the card"
    parts = {r["chapter"].part for r in rows}
    assert sum(len(frontpage.chapter_rows(ROOT, "smoke", part=p)) for p in parts) == len(rows)


def test_status_reads_the_full_record():
    full = {"device": "NVIDIA H100", "claims": [{"tier": "full", "holds": True}, {"tier": "full", "holds": False}]}
    assert frontpage.status(None, full) == "not run in this build; full 1 of 2 held on NVIDIA H100"


TIME_WORDS = re.compile(r"\b(\d+(\.\d+)?\s*(s|sec|seconds?|min|minutes?|hours?)|a (second|minute)|minutes)\b", re.I)


def test_paper_cards_take_their_run_times_from_the_records():
    """No chapter quotes a run time in prose: its card holds the marker the records fill in."""
    for c in book.chapters():
        text = (ROOT / c.source).read_text(encoding="utf-8")
        card = text[text.index("Paper card") : text.index(":::", text.index("Paper card") + 20)]
        assert frontpage.RUNTIME_MARKER in card, f"{c.slug}: no run-time marker in the paper card"
        scale = card[card.index("**Scale") :].split("\n\n")[0] if "**Scale" in card else ""
        assert not TIME_WORDS.search(scale), f"{c.slug}: a run time in prose: {TIME_WORDS.search(scale).group(0)!r}"


def test_run_times_fill_the_marker_from_the_records(tmp_path):
    import json

    (tmp_path / "_build" / "results" / "smoke").mkdir(parents=True)
    (tmp_path / "_build" / "results" / "smoke" / "demo.json").write_text(
        json.dumps({"wall_seconds": 42.4, "seed": 0, "device": "CPU (2 cores)"})
    )
    (tmp_path / "results" / "sweeps" / "smoke").mkdir(parents=True)
    (tmp_path / "results" / "sweeps" / "smoke" / "demo.json").write_text(
        json.dumps(
            {"seeds": [0, 1], "seconds": {"0": 40.0, "1": 51.0}, "device": "CPU (2 cores)", "date": "2026-12-01"}
        )
    )
    nb = tmp_path / "demo.ipynb"
    cell = {"cell_type": "markdown", "metadata": {}, "source": f"**Scale.** Small. {frontpage.RUNTIME_MARKER}"}
    nb.write_text(json.dumps({"cells": [cell], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    assert frontpage.fill_run_times(nb, tmp_path, "demo", "smoke")
    text = json.loads(nb.read_text())["cells"][0]["source"]
    assert "42 s in this build" in text and "40 to 51 s per seed over seeds 0, 1" in text
    assert "no full-profile record yet" in text and frontpage.RUNTIME_MARKER not in text
