"""A new chapter from the template: ``python -m varbook.book new PART SLUG``.

The template ``book/_template/chapter.md`` is a chapter that runs as it is (a tiny, real
reproduction) and shows the anatomy of every chapter in order. :func:`new_chapter` writes,
with the slug filled in:

* ``book/<part>/<slug>.md``, the chapter, and its paired notebook ``<slug>.ipynb``
  (written by jupytext, without outputs);
* ``book/<part>/<slug>.claims.yml``, its claims (``tests/chapters/test_chapter_wiring.py``
  checks every chapter of the table of contents: the claims it checks are in its claims file,
  asserted claims carry a negative control, the library code it shows exists);
* its entry in ``_toc.yml``, last in its part; a new part gets ``book/<part>/index.md`` and
  a part entry before the back matter.

It refuses a slug or part that is not a lower-case Python-style name, a reserved slug, and a
slug that some part already has.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from .runner import chapters, project_root

TEMPLATE = Path("book") / "_template"
"""The template's folder, relative to the project root."""
TEMPLATE_SLUG = "chapter"
"""The slug of the template itself (``book/_template/chapter.md``)."""
NAME = re.compile(r"[a-z][a-z0-9_]*")
"""What a part or a slug looks like: lower case, digits and underscores, a letter first."""
RESERVED = frozenset({TEMPLATE_SLUG, "index", "intro", "api", "references", "reproducibility"})
"""Slugs taken by the template and the book's own pages."""
BACK_MATTER = "Back matter"
"""The caption of the last part; a new part goes before it."""


class ScaffoldError(ValueError):
    """A chapter that cannot be scaffolded: a bad name, or one already taken."""


@dataclass(frozen=True)
class Scaffold:
    """The files :func:`new_chapter` wrote, relative to the project root."""

    chapter: Path
    notebook: Path
    claims: Path
    index: Path | None  # the part's new index page, or None when the part existed

    def files(self) -> list[Path]:
        return [p for p in (self.chapter, self.notebook, self.claims, self.index) if p is not None]


def label(slug: str) -> str:
    """The cross-reference label of a chapter: its slug with dashes (``mult_vae`` -> ``mult-vae``)."""
    return slug.replace("_", "-")


def check_names(part: str, slug: str, root: Path) -> None:
    """Raise :class:`ScaffoldError` unless ``part`` and ``slug`` are good, free names."""
    for what, name in (("part", part), ("slug", slug)):
        if not NAME.fullmatch(name):
            raise ScaffoldError(
                f"bad {what} {name!r}: use lower-case letters, digits and underscores, starting with a letter "
                f"(e.g. {'bayes' if what == 'part' else 'mult_vae'})"
            )
    if slug in RESERVED:
        raise ScaffoldError(f"the slug {slug!r} is reserved ({', '.join(sorted(RESERVED))}); choose another")
    taken = sorted(
        {str(p.relative_to(root)) for p in (root / "book").glob(f"*/{slug}.*")}
        | {str(c.source) for c in chapters(root) if c.slug == slug}
    )
    if taken:
        raise ScaffoldError(f"the chapter {slug!r} exists already: {', '.join(taken)}")


def fill(text: str, part: str, slug: str) -> str:
    """The template's text with the template's slug, part and label replaced by the chapter's."""
    lab = label(slug)
    text = text.replace(f"book/_template/{TEMPLATE_SLUG}", f"book/{part}/{slug}")
    text = re.sub(rf"^\({TEMPLATE_SLUG}\)=$", f"({lab})=", text, flags=re.M)
    text = re.sub(rf"(?<=\{{ref\}}`){TEMPLATE_SLUG}(?=`)", lab, text)
    text = re.sub(rf"(?<=:label: ){TEMPLATE_SLUG}-", f"{lab}-", text)
    text = re.sub(rf"(?<=\{{eq\}}`){TEMPLATE_SLUG}-", f"{lab}-", text)
    text = re.sub(rf"(?<=\{{solution\}} ){TEMPLATE_SLUG}-", f"{lab}-", text)
    text = re.sub(rf"(?<=\{{solution-start\}} ){TEMPLATE_SLUG}-", f"{lab}-", text)
    text = text.replace(f'"{TEMPLATE_SLUG}"', f'"{slug}"').replace('"_template"', f'"{part}"')
    return text


def _toc_dump(toc) -> str:
    import yaml

    class Dumper(yaml.SafeDumper):  # lists indented under their key, as _toc.yml is written
        def increase_indent(self, flow: bool = False, indentless: bool = False):
            return super().increase_indent(flow, False)

    return yaml.dump(toc, Dumper=Dumper, sort_keys=False, default_flow_style=False, allow_unicode=True, width=1000)


def add_to_toc(root: Path, part: str, slug: str, caption: str) -> bool:
    """Add ``book/<part>/<slug>`` last in its part of ``_toc.yml``; return whether the part is new."""
    import yaml

    path = root / "_toc.yml"
    toc = yaml.safe_load(path.read_text(encoding="utf-8"))
    parts = toc.setdefault("parts", [])
    entry = {"file": f"book/{part}/{slug}", "title": slug.replace("_", " ").capitalize()}  # the sidebar's short title
    index = f"book/{part}/index"
    for p in parts:
        for ch in p.get("chapters") or []:
            if ch.get("file") == index:
                ch.setdefault("sections", []).append(entry)
                path.write_text(_toc_dump(toc), encoding="utf-8")
                return False
    new = {"caption": caption, "chapters": [{"file": index, "sections": [entry]}]}
    at = next((i for i, p in enumerate(parts) if p.get("caption") == BACK_MATTER), len(parts))
    parts.insert(at, new)
    path.write_text(_toc_dump(toc), encoding="utf-8")
    return True


def write_notebook(source: Path) -> Path:
    """Write the notebook paired with the MyST chapter ``source``, as ``jupytext --to ipynb`` does."""
    import jupytext
    from jupytext.config import load_jupytext_config

    config = load_jupytext_config(str(source.parent))
    path = source.with_suffix(".ipynb")
    jupytext.write(jupytext.read(source), path, fmt="ipynb", config=config)
    return path


def new_chapter(part: str, slug: str, root: Path | None = None) -> Scaffold:
    """Scaffold chapter ``slug`` in part ``part`` from the template; return the files written."""
    root = root or project_root()
    check_names(part, slug, root)
    template = root / TEMPLATE
    sources = [template / f"{TEMPLATE_SLUG}.md", template / f"{TEMPLATE_SLUG}.claims.yml"]
    missing = [str(p.relative_to(root)) for p in sources if not p.exists()]
    if missing:
        raise ScaffoldError(f"the chapter template is incomplete: missing {', '.join(missing)}")
    folder = root / "book" / part
    chapter, claims = folder / f"{slug}.md", folder / f"{slug}.claims.yml"
    caption = part.replace("_", " ").capitalize()
    index = folder / "index.md"
    new_index = not index.exists()
    folder.mkdir(parents=True, exist_ok=True)
    chapter.write_text(fill(sources[0].read_text(encoding="utf-8"), part, slug), encoding="utf-8")
    claims.write_text(fill(sources[1].read_text(encoding="utf-8"), part, slug), encoding="utf-8")
    if new_index:
        index.write_text(
            f"# {caption}\n\nWhat the chapters of this part have in common.\n\n<!-- varbook:part -->\n\n"
            "```{tableofcontents}\n```\n",
            encoding="utf-8",
        )
    write_notebook(chapter)
    add_to_toc(root, part, slug, caption)
    return Scaffold(
        chapter.relative_to(root),
        chapter.with_suffix(".ipynb").relative_to(root),
        claims.relative_to(root),
        index.relative_to(root) if new_index else None,
    )
