"""Course material: exercises and solutions, the student edition, and the teaching guide.

* Exercises use `sphinx-exercise` directives: ``{exercise}`` (with a ``:label:``) and, for each,
  a ``{solution}`` (text) or a gated ``{solution-start}`` ... ``{solution-end}`` pair around code
  cells that papermill executes with the chapter, so that CI proves every solution runs.
* The student edition (``make book EDITION=student``) is the same site with every solution
  removed, from the pages and from the downloadable notebooks: :func:`strip_solutions`.
* The teaching guide (``book/teaching.md``) is generated at build time by :func:`teaching_page`:
  a map of the book (:func:`book_map`, drawn by :func:`draw_map`) from the chapters' imports,
  reading and running times from the records, and two syllabi (:func:`syllabus`).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from .runner import Chapter, chapters

EDITIONS = ("instructor", "student")

_FENCE = re.compile(r"^(?P<indent>\s*)(?P<fence>:{3,}|`{3,})\{(?P<name>[\w-]+)\}")

# ----------------------------------------------------------------------------------------
# Exercises and solutions
# ----------------------------------------------------------------------------------------


def _directives(text: str) -> list[str]:
    return [m.group("name") for m in map(_FENCE.match, text.splitlines()) if m]


def count_exercises(text: str) -> dict[str, int]:
    """Count the exercise directives of a chapter's source: exercises, solutions (text or gated),
    and solutions without the ``dropdown`` class (shown open in the instructor edition).

    >>> src = ":::{exercise}\\n:label: a\\nQ\\n:::\\n\\n:::{solution} a\\n:class: dropdown\\nA\\n:::\\n"
    >>> count_exercises(src)
    {'exercises': 1, 'solutions': 1, 'open_solutions': 0}
    """
    names = _directives(text)
    lines = text.splitlines()
    open_solutions = 0
    for i, line in enumerate(lines):
        m = _FENCE.match(line)
        if m and m.group("name") in ("solution", "solution-start"):
            options = []
            for nxt in lines[i + 1 : i + 6]:
                if not nxt.strip().startswith(":"):
                    break
                options.append(nxt)
            open_solutions += not any("dropdown" in o for o in options if o.strip().startswith(":class:"))
    return {
        "exercises": names.count("exercise"),
        "solutions": names.count("solution") + names.count("solution-start"),
        "open_solutions": open_solutions,
    }


def _strip_blocks(text: str) -> str:
    """Remove every ``{solution}`` block (colon or backtick fence) from MyST text."""
    lines = text.splitlines(keepends=True)
    out: list[str] = []
    i = 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if m and m.group("name") == "solution":
            fence = m.group("fence")
            j = i + 1
            closing = re.compile(rf"^\s*{re.escape(fence[0])}{{{len(fence)},}}\s*$")
            while j < len(lines) and not closing.match(lines[j]):
                j += 1
            i = j + 1
            continue
        out.append(lines[i])
        i += 1
    return "".join(out)


def _split_at(text: str, name: str) -> tuple[str, str] | None:
    """``(before, after)``: the text before the ``{name}`` fence and after its closing fence."""
    lines = text.splitlines(keepends=True)
    for i, line in enumerate(lines):
        m = _FENCE.match(line)
        if m and m.group("name") == name:
            fence = m.group("fence")
            closing = re.compile(rf"^\s*{re.escape(fence[0])}{{{len(fence)},}}\s*$")
            j = i + 1
            while j < len(lines) and not closing.match(lines[j]):
                j += 1
            return "".join(lines[:i]), "".join(lines[j + 1 :])
    return None


def _source(cell: dict) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


def strip_solutions(nb: dict) -> dict:
    """The notebook ``nb`` (nbformat JSON) without its solutions: ``{solution}`` blocks leave the
    markdown cells, and everything from a ``{solution-start}`` fence to its ``{solution-end}``
    (code cells and outputs included) leaves the notebook. Raises on an unclosed gated solution."""
    cells: list[dict] = []
    gated = False
    for cell in nb.get("cells", []):
        text = _source(cell) if cell.get("cell_type") == "markdown" else ""
        keep_text = None
        if gated:
            split = _split_at(text, "solution-end") if text else None
            if split is None:
                continue  # inside a gated solution
            gated, keep_text = False, split[1]
            text = keep_text
        if cell.get("cell_type") == "markdown":
            text = _strip_blocks(text)
            split = _split_at(text, "solution-start")
            while split is not None:
                before, after = split
                end = _split_at(after, "solution-end")
                if end is None:
                    gated, text = True, before
                    break
                text = before + end[1]
                split = _split_at(text, "solution-start")
            if text.strip():
                cells.append(dict(cell, source=text))
            continue
        cells.append(cell)
    if gated:
        raise ValueError("a {solution-start} has no matching {solution-end}")
    return dict(nb, cells=cells)


def strip_solutions_text(text: str) -> str:
    """A MyST page without its solutions (text blocks and gated ranges)."""
    nb = {"cells": [{"cell_type": "markdown", "source": text}]}
    out = strip_solutions(nb)["cells"]
    return _source(out[0]) if out else ""


# ----------------------------------------------------------------------------------------
# The map of the book
# ----------------------------------------------------------------------------------------

COMMON = ("book", "runtime", "protocols")
"""Packages every chapter uses (the runner, seeding): left out of the map."""

SHARED_DATA = ("data",)
"""Packages shown on the map but not counted as building on a chapter: loading a dataset that an
earlier chapter also loads is not building on that chapter."""

_CODE_CELL = re.compile(r"^```\{code-cell\}[^\n]*\n(.*?)^```\s*$", re.S | re.M)
_FROM_PKG = re.compile(r"^\s*from\s+varbook\.(\w+)")
_FROM_TOP = re.compile(r"^\s*from\s+varbook\s+import\s+\(?([\w\s,]+?)\)?\s*$")
_IMPORT = re.compile(r"^\s*import\s+varbook\.(\w+)")
_ATTR = re.compile(r"\bvarbook\.(\w+)")
_LISTING = re.compile(r"src/varbook/(\w+)")
_LABEL = re.compile(r"^\((?P<label>[\w-]+)\)=\s*$", re.M)
_TITLE = re.compile(r"^# (.+)$", re.M)
_REF = re.compile(r"\{(?:ref|doc)\}`(?:[^`<]*<)?(?P<target>[^`>]+)>?`")


def library_packages() -> list[str]:
    import pkgutil

    import varbook

    return sorted(m.name for m in pkgutil.iter_modules(varbook.__path__) if not m.name.startswith("_"))


def chapter_packages(text: str, known: list[str] | None = None) -> set[str]:
    """The library packages a chapter's source uses: its imports, its ``varbook.x`` names and the
    library files its listings show (``src/varbook/x/...``).

    >>> sorted(chapter_packages("```{code-cell} ipython3\\nfrom varbook import vi, nn\\n"
    ...                         "from varbook.sde import fbm\\n```\\n", ["nn", "sde", "vi"]))
    ['nn', 'sde', 'vi']
    """
    known = known if known is not None else library_packages()
    found: set[str] = set()
    for code in _CODE_CELL.findall(text):
        for line in code.splitlines():
            for rx in (_FROM_PKG, _IMPORT):
                m = rx.match(line)
                if m:
                    found.add(m.group(1))
            m = _FROM_TOP.match(line)
            if m:
                found |= {n.split(" as ")[0].strip() for n in m.group(1).split(",")}
            found |= set(_ATTR.findall(line))
    found |= set(_LISTING.findall(text))
    return {p for p in found if p in known}


@dataclass
class BookMap:
    """Which chapters use which library packages, and which chapters build on which."""

    chapters: list[Chapter]
    titles: dict[str, str]
    packages: list[str]
    uses: dict[str, set[str]]
    builds_on: dict[str, set[str]] = field(default_factory=dict)
    why: dict[tuple[str, str], str] = field(default_factory=dict)


def book_map(root: Path) -> BookMap:
    """The map of the book, from the chapters' sources.

    Chapter A builds on an earlier chapter B when A's source links to B (its prerequisites), or
    when B is the first chapter in the book to use a library package that A uses too (A reuses
    what B introduced). Packages every chapter uses (:data:`COMMON`) are left out.
    """
    chs = chapters(root)
    known = [p for p in library_packages() if p not in COMMON]
    texts = {c.slug: (root / c.source).read_text(encoding="utf-8") for c in chs}
    titles = {}
    labels = {}
    for c in chs:
        m = _TITLE.search(texts[c.slug])
        titles[c.slug] = m.group(1).strip() if m else c.slug
        for lab in _LABEL.findall(texts[c.slug]):
            labels[lab] = c.slug
        labels[c.docname] = labels["/" + c.docname] = c.slug
    uses = {c.slug: chapter_packages(texts[c.slug], known) for c in chs}
    first: dict[str, str] = {}
    for c in chs:
        for p in sorted(uses[c.slug]):
            first.setdefault(p, c.slug)
    order = {c.slug: i for i, c in enumerate(chs)}
    builds_on: dict[str, set[str]] = {c.slug: set() for c in chs}
    why: dict[tuple[str, str], str] = {}
    for c in chs:
        for target in _REF.findall(texts[c.slug]):
            other = labels.get(target.strip())
            if other and other != c.slug and order[other] < order[c.slug]:
                builds_on[c.slug].add(other)
                why[(c.slug, other)] = "prerequisite"
        for p in uses[c.slug] - set(SHARED_DATA):
            other = first[p]
            if other != c.slug:
                builds_on[c.slug].add(other)
                why.setdefault((c.slug, other), f"reuses {p}")
    packages = [p for p in known if any(p in u for u in uses.values())]
    return BookMap(chs, titles, packages, uses, builds_on, why)


def draw_map(bm: BookMap, path: Path) -> Path:
    """Draw the map (an SVG, or what the suffix of ``path`` names): chapters (by part) on the left, library packages on the right,
    a line where a chapter uses a package, and arcs where a chapter builds on an earlier one."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyArrowPatch

    n, m = len(bm.chapters), max(len(bm.packages), 1)
    height = max(n, m) * 0.42 + 1.2
    fig, ax = plt.subplots(figsize=(9.0, height), layout="tight")
    parts = list(dict.fromkeys(c.part for c in bm.chapters))
    colors = plt.get_cmap("tab10")
    ys = {c.slug: (n - 1 - i) * (max(n, m) - 1) / max(n - 1, 1) for i, c in enumerate(bm.chapters)}
    yp = {p: (m - 1 - i) * (max(n, m) - 1) / max(m - 1, 1) for i, p in enumerate(bm.packages)}
    for c in bm.chapters:
        for p in bm.uses[c.slug]:
            if p in yp:
                ax.plot([0.45, 0.95], [ys[c.slug], yp[p]], color=colors(parts.index(c.part)), alpha=0.45, lw=1.2)
    for c in bm.chapters:
        for other in sorted(bm.builds_on.get(c.slug, ())):
            arrow = FancyArrowPatch(
                (0.04, ys[other]),
                (0.04, ys[c.slug]),
                connectionstyle="arc3,rad=-0.35",
                arrowstyle="-|>",
                mutation_scale=9,
                color="0.35",
                lw=0.9,
                linestyle="-" if bm.why.get((c.slug, other)) == "prerequisite" else (0, (3, 2)),
            )
            ax.add_patch(arrow)
    for c in bm.chapters:
        ax.plot([0.02, 0.45], [ys[c.slug]] * 2, color=colors(parts.index(c.part)), lw=0.6, alpha=0.5, ls=":")
        ax.plot([0.45], [ys[c.slug]], "o", ms=4, color=colors(parts.index(c.part)))
    for p in bm.packages:
        ax.plot([0.95], [yp[p]], "o", ms=4, color="0.3")
    for c in bm.chapters:
        ax.text(0.0, ys[c.slug], c.slug.replace("_", " "), ha="right", va="center", fontsize=10,
                color=colors(parts.index(c.part)), fontweight="bold")  # fmt: skip
    for p in bm.packages:
        ax.text(1.0, yp[p], f"varbook.{p}", ha="left", va="center", fontsize=10, family="monospace")
    handles = [plt.Line2D([], [], color=colors(i), lw=3, label=part) for i, part in enumerate(parts)]
    handles += [
        plt.Line2D([], [], color="0.35", lw=0.9, label="builds on (prerequisite)"),
        plt.Line2D([], [], color="0.35", lw=0.9, linestyle=(0, (3, 2)), label="builds on (reuses a package)"),
    ]
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.01), ncol=3, fontsize=9, frameon=False)
    ax.set_xlim(-1.1, 1.6)
    ax.set_ylim(-0.8, max(n, m) - 0.2)
    ax.axis("off")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format=path.suffix.lstrip(".") or "svg", bbox_inches="tight", dpi=110)
    plt.close(fig)
    return path


# ----------------------------------------------------------------------------------------
# Times and syllabi
# ----------------------------------------------------------------------------------------


def reading_minutes(text: str) -> int:
    """Minutes to read a chapter's source: prose at 200 words a minute, code at 20 lines a minute.

    >>> reading_minutes("word " * 400 + "\\n```{code-cell} ipython3\\n" + "x = 1\\n" * 40 + "```\\n")
    4
    """
    code = _CODE_CELL.findall(text)
    prose = _CODE_CELL.sub("", text)
    prose = re.sub(r"^[:`]{3,}.*$|^:\w+:.*$|^%.*$", "", prose, flags=re.M)
    words = len(re.findall(r"[A-Za-z]{2,}", prose))
    code_lines = sum(1 for block in code for line in block.splitlines() if line.strip() and not line.startswith(":"))
    return max(1, round(words / 200 + code_lines / 20))


def _contiguous_groups(weights: list[float], k: int) -> list[list[int]]:
    """Split indices 0..n-1 into at most ``k`` contiguous groups with the smallest largest sum."""
    n = len(weights)
    if n == 0:
        return []
    k = min(k, n)
    best: dict[tuple[int, int], tuple[float, list[int]]] = {}

    def solve(i: int, g: int) -> tuple[float, list[int]]:
        if (i, g) in best:
            return best[(i, g)]
        if g == 1:
            result = (sum(weights[i:]), [n])
        else:
            result = (math.inf, [n])
            for j in range(i + 1, n - g + 2):
                rest, cuts = solve(j, g - 1)
                cost = max(sum(weights[i:j]), rest)
                if cost < result[0]:
                    result = (cost, [j, *cuts])
        best[(i, g)] = result
        return result

    cuts = [0, *solve(0, k)[1]]
    return [list(range(a, b)) for a, b in zip(cuts, cuts[1:], strict=False) if b > a]


def syllabus(slugs: list[str], minutes: dict[str, float], weeks: int = 12, days: int = 3) -> dict[str, list]:
    """Two plans over the chapters in book order: a course of ``weeks`` weeks (the first week for
    the book's tools, the last for projects, chapters balanced by study time over the rest) and a
    workshop of ``days`` days (chapters balanced by study time)."""
    w = [float(minutes.get(s, 60)) for s in slugs]
    course = _contiguous_groups(w, weeks - 2)
    workshop = _contiguous_groups(w, days)
    return {
        "course": [[slugs[i] for i in g] for g in course],
        "workshop": [[slugs[i] for i in g] for g in workshop],
    }


def _record(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None


def teaching_page(root: Path, profile: str, map_file: str) -> str:
    """The generated part of the teaching guide (MyST): the map, a table of times, the syllabi."""
    bm = book_map(root)
    rows = []
    study: dict[str, float] = {}
    for c in bm.chapters:
        text = (root / c.source).read_text(encoding="utf-8")
        read = reading_minutes(text)
        ex = count_exercises(text)
        smoke = _record(root / "_build" / "results" / profile / f"{c.slug}.json")
        full = _record(root / "results" / "full" / f"{c.slug}.json")
        run = f"{smoke['wall_seconds']:.0f} s ({profile})" if smoke and "wall_seconds" in smoke else "not run"
        fulltxt = (
            f"{full.get('wall_seconds', 0):.0f} s on {full.get('device', 'unknown device')}"
            if full
            else "no record yet"
        )
        study[c.slug] = read + 20 * max(ex["exercises"], 1)  # reading, plus about 20 minutes an exercise
        builds = ", ".join(o.replace("_", " ") for o in sorted(bm.builds_on[c.slug])) or "—"
        rows.append(
            f"| {{doc}}`{c.slug.replace('_', ' ')} </{c.docname}>` | {read} min | {run} | {fulltxt} "
            f"| {ex['exercises']} | {builds} |"
        )
    plans = syllabus([c.slug for c in bm.chapters], study)
    link = {c.slug: f"{{doc}}`{c.slug.replace('_', ' ')} </{c.docname}>`" for c in bm.chapters}
    lines = [
        f"```{{figure}} {map_file}",
        ":name: fig-book-map",
        ":width: 100%",
        "",
        "The map of the book, drawn at build time from the chapters' sources. Left: the chapters, "
        "coloured by part; right: the library packages they import (runner and seeding, which every "
        "chapter uses, left out); arcs: a chapter builds on an earlier one (solid: it lists it among "
        "its prerequisites; dashed: it reuses a package that the earlier chapter introduced).",
        "```",
        "",
        "## Chapters at a glance",
        "",
        "Reading time counts prose at 200 words and code at 20 lines a minute; running times come from "
        "this build's records and the committed full-profile records.",
        "",
        "| chapter | to read | to run | full profile | exercises | builds on |",
        "|---|---|---|---|---|---|",
        *rows,
        "",
        "## A 12-week course",
        "",
        "Week 1 sets up the tools (`make book`, a chapter run, the reproducibility page); chapters follow "
        "in book order, balanced by study time (reading plus about 20 minutes an exercise); the last "
        "week is for projects, for example a full-profile run of a chapter or an exercise grown into "
        "an experiment.",
        "",
        "| week | chapters |",
        "|---|---|",
        "| 1 | the book's tools: {doc}`/book/intro`, {doc}`/book/reproducibility` |",
    ]
    for i, group in enumerate(plans["course"], start=2):
        lines.append(f"| {i} | {', '.join(link[s] for s in group)} |")
    for i in range(len(plans["course"]) + 2, 12):
        lines.append(f"| {i} | review, or a chapter in depth (its full profile, its peers) |")
    lines += [
        "| 12 | projects |",
        "",
        "## A 3-day workshop",
        "",
        "Each day reads its chapters in the morning and works their exercises in the afternoon.",
        "",
        "| day | chapters |",
        "|---|---|",
    ]
    for i, group in enumerate(plans["workshop"], start=1):
        lines.append(f"| {i} | {', '.join(link[s] for s in group)} |")
    return "\n".join(lines) + "\n"
