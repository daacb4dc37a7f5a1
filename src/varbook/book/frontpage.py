"""The front page and the part pages list the chapters as they are: paper, one line, status, time.

A chapter gives its one-line summary in a MyST comment under its title (``% summary: ...``) and
its short title in ``_toc.yml`` (``title:``, shown in the sidebar; the page keeps the paper's
title). The status and the running time come from the records (this build's, and the committed
full-profile record), never from prose. :func:`chapter_table` writes the table that
``book/intro.md`` (marker ``<!-- varbook:chapters -->``) and each part's ``index.md`` (marker
``<!-- varbook:part -->``) show; :func:`run_times` writes the measured times into each chapter's
paper card (marker ``<!-- varbook:runtime -->``).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from .runner import Chapter, chapters, toc_files

CHAPTERS_MARKER = "<!-- varbook:chapters -->"
PART_MARKER = "<!-- varbook:part -->"
RUNTIME_MARKER = "<!-- varbook:runtime -->"
"""In a chapter's paper card, where the measured run times go (:func:`run_times`)."""

_SUMMARY = re.compile(r"^% summary: (.+)$", re.M)
_CITE = re.compile(r"\{cite\}`([^`,]+)")


def short_titles(root: Path) -> dict[str, str]:
    """The sidebar titles of ``_toc.yml`` by document name (``book/gradients/straight_through``)."""
    import yaml

    toc = yaml.safe_load((root / "_toc.yml").read_text(encoding="utf-8"))
    out: dict[str, str] = {}

    def walk(node) -> None:
        if isinstance(node, dict):
            if "file" in node and "title" in node:
                out[node["file"]] = node["title"]
            for key in ("parts", "chapters", "sections"):
                for child in node.get(key, []) or []:
                    walk(child)

    walk(toc)
    return out


def summary(text: str) -> str:
    """A chapter's one-line summary (its ``% summary:`` comment), or an empty string.

    >>> summary("# Title\\n% summary: One line.\\n")
    'One line.'
    """
    m = _SUMMARY.search(text)
    return m.group(1).strip() if m else ""


def _record(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None


def status(record: dict | None, full: dict | None) -> str:
    """Claims held in this build's record, and whether a full-profile record exists.

    >>> status({"claims": [{"tier": "robust", "holds": True}, {"tier": "robust", "holds": False},
    ...         {"tier": "full", "holds": None}]}, None)
    'robust 1 of 2 held; full: no record yet'
    """
    parts = []
    if record is None:
        parts.append("not run in this build")
    else:
        robust = [c for c in record.get("claims", []) if c.get("tier") == "robust" and c.get("kind") != "sanity"]
        held = sum(c.get("holds") is True and c.get("control_holds") is not True for c in robust)
        parts.append(f"robust {held} of {len(robust)} held")
    if full is None:
        parts.append("full: no record yet")
    else:
        tier = [c for c in full.get("claims", []) if c.get("tier") == "full"]
        held = sum(c.get("holds") is True and c.get("control_holds") is not True for c in tier)
        parts.append(f"full {held} of {len(tier)} held on {full.get('device', 'an unknown device')}")
    return "; ".join(parts)


def chapter_rows(root: Path, profile: str, part: str | None = None) -> list[dict]:
    """One row per chapter (of ``part``, or all): link, paper, summary, status, time."""
    from .reader import _bibliography

    bib = _bibliography(str(root / "references.bib")) if (root / "references.bib").exists() else {}
    titles = short_titles(root)
    rows = []
    for c in chapters(root):
        if part is not None and c.part != part:
            continue
        text = (root / c.source).read_text(encoding="utf-8")
        cite = _CITE.search(text)
        record = _record(root / "_build" / "results" / profile / f"{c.slug}.json")
        full = _record(root / "results" / "full" / f"{c.slug}.json")
        run = f"{record['wall_seconds']:.0f} s ({profile})" if record and "wall_seconds" in record else "—"
        rows.append(
            {
                "chapter": c,
                "title": titles.get(c.docname, c.slug.replace("_", " ")),
                "paper": bib.get(cite.group(1).strip(), cite.group(1)) if cite else "—",
                "summary": summary(text) or "—",
                "status": status(record, full),
                "time": run,
            }
        )
    return rows


def run_times(root: Path, slug: str, profile: str) -> str:
    """The run times of a chapter as its records measured them: this build, the seed sweep, the full profile.

    >>> run_times(Path("/nonexistent"), "demo", "smoke")
    '**Measured run times** (from the records): not run in this build; no seed sweep; no full-profile record yet.'
    """
    record = _record(root / "_build" / "results" / profile / f"{slug}.json")
    sweep = _record(root / "results" / "sweeps" / profile / f"{slug}.json")
    full = _record(root / "results" / "full" / f"{slug}.json")
    parts = []
    if record and "wall_seconds" in record:
        parts.append(
            f"{record['wall_seconds']:.0f} s in this build ({profile} profile, seed {record.get('seed', 0)}, "
            f"{record.get('device', 'an unknown device')})"
        )
    else:
        parts.append("not run in this build")
    seconds = [float(v) for v in (sweep or {}).get("seconds", {}).values()]
    if seconds:
        parts.append(
            f"{min(seconds):.0f} to {max(seconds):.0f} s per seed over seeds "
            f"{', '.join(str(s) for s in sweep.get('seeds', []))} ({profile} sweep, "  # type: ignore[union-attr]
            f"{sweep.get('device', 'an unknown device')}, {str(sweep.get('date', ''))[:10]})"  # type: ignore[union-attr]
        )
    else:
        parts.append("no seed sweep")
    if full and "wall_seconds" in full:
        parts.append(
            f"full profile {full['wall_seconds'] / 60:.1f} min on {full.get('device', 'an unknown device')} "
            f"({str(full.get('date', ''))[:10]})"
        )
    else:
        parts.append("no full-profile record yet")
    return "**Measured run times** (from the records): " + "; ".join(parts) + "."


def fill_run_times(notebook: Path, root: Path, slug: str, profile: str) -> bool:
    """Replace the run-time marker in the markdown cells of a staged chapter; whether one was there."""
    nb = json.loads(notebook.read_text(encoding="utf-8"))
    found = False
    for cell in nb.get("cells", []):
        source = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
        if cell["cell_type"] == "markdown" and RUNTIME_MARKER in source:
            cell["source"] = source.replace(RUNTIME_MARKER, run_times(root, slug, profile))
            found = True
    if found:
        notebook.write_text(json.dumps(nb, indent=1) + "\n", encoding="utf-8")
    return found


def chapter_table(rows: list[dict]) -> str:
    """The rows as a MyST table, each chapter linked by its short title."""

    def esc(text: str) -> str:
        return text.replace("|", "\\|")

    lines = ["| chapter | paper | in one line | status | runs in |", "|---|---|---|---|---|"]
    for r in rows:
        ch: Chapter = r["chapter"]
        lines.append(
            f"| {{doc}}`{esc(r['title'])} </{ch.docname}>` | {esc(r['paper'])} | {esc(r['summary'])} "
            f"| {esc(r['status'])} | {r['time']} |"
        )
    return "\n".join(lines) + "\n"


def fill_pages(site: Path, root: Path, profile: str) -> None:
    """Replace the markers of the staged front page and part pages by their chapter tables."""
    intro = site / "book" / "intro.md"
    if intro.exists() and CHAPTERS_MARKER in intro.read_text(encoding="utf-8"):
        text = intro.read_text(encoding="utf-8")
        intro.write_text(text.replace(CHAPTERS_MARKER, chapter_table(chapter_rows(root, profile))), encoding="utf-8")
    for name in toc_files(_toc(root)):
        page = site / f"{name}.md"
        if page.name == "index.md" and page.exists() and PART_MARKER in page.read_text(encoding="utf-8"):
            rows = chapter_rows(root, profile, part=page.parent.name)
            page.write_text(
                page.read_text(encoding="utf-8").replace(PART_MARKER, chapter_table(rows)), encoding="utf-8"
            )


def _toc(root: Path):
    import yaml

    return yaml.safe_load((root / "_toc.yml").read_text(encoding="utf-8"))
