"""The front page and part pages: every chapter with a short title, a summary, its status and time."""

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
