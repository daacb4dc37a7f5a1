import pytest

from varbook import book
from varbook.book import __main__ as cli


def test_chapters_come_from_the_toc():
    chapters = book.chapters()
    slugs = [c.slug for c in chapters]
    assert "straight_through" in slugs
    ch = chapters[slugs.index("straight_through")]
    assert ch.part == "gradients" and ch.source.as_posix() == "book/gradients/straight_through.md"


def test_unknown_chapter_is_a_clear_error(capsys):
    with pytest.raises(book.UnknownChapter, match="unknown chapter 'nope'.*straight_through"):
        book.select(["nope"])
    assert cli.main(["run", "--only", "nope"]) == 2
    assert "unknown chapter 'nope'" in capsys.readouterr().err


def test_unknown_profile_in_the_runner(capsys):
    assert cli.main(["run", "--profile", "fast", "--only", "straight_through"]) == 2
    assert "unknown profile" in capsys.readouterr().err


def test_collapse_carriage_returns():
    assert book.collapse_carriage_returns("a\r  0%\r100%\nnext\r") == "100%\nnext"
    assert book.collapse_carriage_returns("plain\ntext\n") == "plain\ntext\n"


def test_dashboard_lists_claims_and_runs():
    rec = {
        "slug": "x",
        "profile": "smoke",
        "origin": "this build",
        "device": "cpu",
        "wall_seconds": 3.0,
        "peak_memory_bytes": 2**20,
        "torch": "2",
        "seed": 0,
        "date": "2026-01-01T00:00:00",
        "claims": [
            {
                "statement": "s <1>",
                "tier": "robust",
                "paper": "p",
                "source": "T1",
                "ours": 0.5,
                "comparison": "< 1",
                "holds": True,
                "asserted": True,
            },
            {
                "statement": "t",
                "tier": "exploratory",
                "paper": "",
                "source": "",
                "ours": [1.0, 2.0],
                "comparison": "< 1",
                "holds": False,
                "asserted": False,
            },
            {
                "statement": "u",
                "tier": "full",
                "paper": "",
                "source": "",
                "ours": None,
                "comparison": "not run in this profile",
                "holds": None,
                "asserted": False,
            },
        ],
    }
    text = book.dashboard([rec], links={"x": "gradients/x.html#reproduction-check"}, commit="abc123")
    assert "1 claims reproduced" in text and "1 not reproduced" in text and "1 not run" in text
    # the matrix first: one row per chapter, a cell per tier, linked to the chapter's check
    assert text.index("At a glance") < text.index("Claims, chapter by chapter") < text.index("Chapter runs")
    assert '<a href="gradients/x.html#reproduction-check">x</a>' in text
    assert "<td>held 1</td><td>not run 1</td><td>not reproduced 1</td><td>—</td>" in text
    assert "No chapter has a committed full-profile record yet" in text and "abc123" in text
    assert 'id="claims-x-smoke"' in text and "<details" in text
    assert "s &lt;1&gt;" in text and "not run here" in text
    assert "<td>1</td><td>0</td><td>0</td><td>1</td><td>1</td>" in text  # the chapter's tally row
    assert "varbook-runs" in text and "varbook-env" in text
    assert "No chapter" in book.dashboard([])


def test_stage_needs_executed_chapters(tmp_path):
    root = tmp_path / "proj"
    (root / "book" / "gradients").mkdir(parents=True)
    (root / "_toc.yml").write_text("format: jb-book\nroot: book/intro\nchapters:\n  - file: book/gradients/demo\n")
    (root / "_config.yml").write_text("title: t\n")
    (root / "references.bib").write_text("")
    (root / "book" / "intro.md").write_text("# intro\n")
    (root / "book" / "gradients" / "demo.md").write_text("---\nkernelspec:\n  name: python3\n---\n# demo\n")
    assert [c.slug for c in book.chapters(root)] == ["demo"]
    with pytest.raises(FileNotFoundError, match="not executed.*demo"):
        book.stage("smoke", root)


CHAPTER = """---
jupytext:
  text_representation:
    extension: .md
    format_name: myst
kernelspec:
  display_name: Python 3
  language: python
  name: python3
---

# {slug}

```{{code-cell}} ipython3
:tags: [parameters, remove-cell]

profile = "smoke"
seed = 0
```

```{{code-cell}} ipython3
print("running", profile, seed)
{body}
```
"""


def make_project(tmp_path, bodies: dict[str, str]):
    """A tiny book project whose chapters run the given code."""
    root = tmp_path / "proj"
    (root / "book" / "gradients").mkdir(parents=True)
    toc = "".join(f"  - file: book/gradients/{slug}\n" for slug in bodies)
    (root / "_toc.yml").write_text("format: jb-book\nroot: book/intro\nchapters:\n" + toc)
    (root / "_config.yml").write_text("title: t\n")
    (root / "book" / "intro.md").write_text("# intro\n")
    for slug, body in bodies.items():
        (root / "book" / "gradients" / f"{slug}.md").write_text(CHAPTER.format(slug=slug, body=body))
    return root


def test_a_failing_chapter_does_not_stop_the_others(tmp_path, capsys):
    root = make_project(tmp_path, {"bad": "1 / 0", "good": "x = 1"})
    outcomes = book.execute(None, "smoke", seed=3, root=root)
    assert [(o.slug, o.ok) for o in outcomes] == [("bad", False), ("good", True)]
    out = capsys.readouterr().out
    assert "FAILED bad" in out and "ZeroDivisionError" in out and "FAILED chapters: bad" in out
    good = (root / "_build" / "executed" / "smoke" / "book" / "gradients" / "good.ipynb").read_text()
    assert "running smoke 3" in good
    assert (root / "_build" / "executed" / "smoke" / "book" / "gradients" / "bad.ipynb").exists()


def test_load_records_reads_build_and_committed_results(tmp_path):
    (tmp_path / "_build" / "results" / "smoke").mkdir(parents=True)
    (tmp_path / "results" / "full").mkdir(parents=True)
    (tmp_path / "_build" / "results" / "smoke" / "a.json").write_text('{"slug": "a", "claims": []}')
    (tmp_path / "results" / "full" / "a.json").write_text('{"slug": "a", "claims": []}')
    records = book.load_records(tmp_path)
    assert [r["origin"] for r in records] == ["this build", "committed full record"]
    (tmp_path / "results" / "full" / "b.json").write_text("{not json")
    with pytest.raises(ValueError, match="unreadable results record"):
        book.load_records(tmp_path)


def test_parallel_execution(tmp_path):
    root = make_project(tmp_path, {"one": "x = 1", "two": "x = 1"})
    outcomes = book.execute(None, "smoke", jobs=2, root=root)
    assert sorted((o.slug, o.ok) for o in outcomes) == [("one", True), ("two", True)]
