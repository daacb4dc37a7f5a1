"""Reader notebooks: a chapter as a plain Jupyter notebook that runs after download.

The site's pages are built from the executed notebooks, whose markdown is MyST: library listings
(``literalinclude``), citations, equation labels and admonitions only render inside the book.
:func:`reader_notebook` turns a chapter's MyST source into a notebook that reads well in plain
Jupyter: listings become the library code itself, citations become author-year text, labelled
equations carry their label as a tag, directives become bold headings, and a first cell says how
to install ``varbook``. It has no outputs, no injected parameters and no path of the machine that
built it; the parameters cell reads ``VARBOOK_PROFILE`` as in the book.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

from .listing import object_source
from .runner import Chapter, chapters
from .teaching import strip_solutions_text

INSTALL = (
    "**A varbook chapter, as a plain notebook.** It runs anywhere the `varbook` library is "
    "installed. From a clone of the repository: `pip install torch==2.13.0`, then "
    '`pip install -e ".[data,peers]" -c constraints.txt` (or `make setup`, which makes `.venv` '
    "with everything the book uses); then open this notebook with that environment's Jupyter "
    "and run all cells. The profile comes from the environment variable `VARBOOK_PROFILE` "
    "(`smoke`, the default, runs on a laptop CPU in about a minute; `full` is the faithful scale "
    "for one GPU). The library code that the book's page shows as listings is included below as "
    "code; the book's page of this chapter has the figures, the executed outputs and the links."
)

_OPEN = re.compile(r"^(?P<fence>`{3,}|:{3,})\{(?P<name>[\w-]+)\}[ \t]*(?P<args>.*)$")
_PLAIN_OPEN = re.compile(r"^(?P<fence>`{3,}|~{3,})[\w+-]*\s*$")
_OPTION = re.compile(r"^:[\w-]+:")
_LABEL_LINE = re.compile(r"^\([\w-]+\)=\s*$")
_ROLE = re.compile(r"\{(?P<role>[\w-]+)\}`(?P<body>[^`]*)`")


@cache
def _bibliography(bib: str) -> dict[str, str]:
    """Author-year labels of the entries of ``references.bib``: "Bengio et al. (2013)"."""
    from pybtex.database import parse_file

    out = {}
    for key, entry in parse_file(bib).entries.items():
        people = entry.persons.get("author") or entry.persons.get("editor") or []
        names = [" ".join(p.last_names).replace("{", "").replace("}", "") for p in people]
        who = names[0] if len(names) == 1 else f"{names[0]} and {names[1]}" if len(names) == 2 else f"{names[0]} et al."
        out[key] = f"{who or key} ({entry.fields.get('year', 'n.d.')})"
    return out


def _titles(root: Path) -> dict[str, str]:
    """Chapter titles by their labels and document names, for ``{ref}`` and ``{doc}``."""
    out: dict[str, str] = {}
    try:
        known = chapters(root)
    except FileNotFoundError:  # not a book project: no titles to resolve
        return out
    for c in known:
        text = (root / c.source).read_text(encoding="utf-8")
        title = re.search(r"^# (.+)$", text, re.M)
        name = title.group(1).strip() if title else c.slug
        for label in re.findall(r"^\(([\w-]+)\)=\s*$", text, re.M):
            out[label] = name
        out[c.docname] = out["/" + c.docname] = name
    return out


def _roles(text: str, root: Path, figures: dict[str, int] | None = None) -> str:
    figures = figures or {}
    bib = _bibliography(str(root / "references.bib")) if (root / "references.bib").exists() else {}
    titles = _titles(root)

    def one(m: re.Match) -> str:
        role, body = m.group("role"), m.group("body")
        if role == "cite":
            return "; ".join(bib.get(k.strip(), k.strip()) for k in body.split(","))
        if role == "eq":
            return f"({body})"
        explicit = re.fullmatch(r"(.*?)\s*<([^>]+)>", body)
        if role == "numref":  # Figure N, numbered in the chapter's order as on the page
            label = explicit.group(2) if explicit else body
            number = str(figures.get(label, "?"))
            return explicit.group(1).replace("%s", number) if explicit else f"Figure {number}"
        if explicit:  # {ref}`text <label>`: the text
            return explicit.group(1)
        if role in ("ref", "doc"):
            return f"*{titles.get(body, body)}*"
        return body

    return _ROLE.sub(one, text)


def _closing(fence: str) -> re.Pattern:
    return re.compile(rf"^{re.escape(fence[0])}{{{len(fence)},}}\s*$")


def plain_markdown(text: str, source_dir: Path, root: Path, figures: dict[str, int] | None = None) -> str:
    """MyST markdown as plain Jupyter markdown (see the module's description)."""
    lines = text.splitlines()
    out: list[str] = []
    stack: list[str] = []  # fences of open directives, whose closing lines are dropped
    i = 0
    while i < len(lines):
        line = lines[i]
        m = _OPEN.match(line)
        if m and m.group("name") in ("literalinclude", "math"):
            close = _closing(m.group("fence"))
            j = i + 1
            while j < len(lines) and not close.match(lines[j]):
                j += 1
            body = lines[i + 1 : j]
            options = {o.split(":")[1]: o.split(":", 2)[2].strip() for o in body if _OPTION.match(o)}
            content = [b for b in body if not _OPTION.match(b)]
            if m.group("name") == "math":
                tag = f" \\tag{{{options['label']}}}" if "label" in options else ""
                out += ["$$", *content[:-1], (content[-1] if content else "") + tag, "$$"]
            else:
                path = (source_dir / m.group("args").strip()).resolve()
                where = (
                    path.relative_to(root.resolve()).as_posix() if path.is_relative_to(root.resolve()) else path.name
                )
                code = object_source(path, options["pyobject"]) if "pyobject" in options else path.read_text()
                what = f"`{options['pyobject']}`, from " if "pyobject" in options else ""
                out += [f"*Library code: {what}`{where}`*", "", "```python", *code.rstrip().splitlines(), "```"]
            i = j + 1
            continue
        if m:
            name, args = m.group("name"), m.group("args").strip()
            title = {
                "admonition": args,
                "exercise": "Exercise",
                "solution": "Solution",
                "solution-start": "Solution",
            }.get(name, name.replace("-", " ").capitalize() + (f": {args}" if args else ""))
            if name != "solution-end":
                out += [f"**{title}.**" if title else "", ""]
            stack.append(m.group("fence"))
            i += 1
            while i < len(lines) and _OPTION.match(lines[i]):
                i += 1
            continue
        if stack and _closing(stack[-1]).match(line):
            stack.pop()
            i += 1
            continue
        plain = _PLAIN_OPEN.match(line)
        if plain:  # an ordinary code block: copied as it is
            close = _closing(plain.group("fence"))
            j = i + 1
            while j < len(lines) and not close.match(lines[j]):
                j += 1
            out += lines[i : j + 1]
            i = j + 1
            continue
        if not _LABEL_LINE.match(line) and not line.startswith("% "):
            out.append(line)
        i += 1
    return _roles("\n".join(out), root, figures).strip() + "\n"


def reader_notebook(root: Path, chapter: Chapter, edition: str = "instructor") -> dict:
    """The reader notebook of ``chapter`` (nbformat 4 JSON); the student edition has no solutions."""
    import jupytext
    import nbformat

    text = (root / chapter.source).read_text(encoding="utf-8")
    if edition == "student":
        text = strip_solutions_text(text)
    if text.startswith("---\n") and "\n---\n" in text[4:]:  # the header: this notebook writes its own
        text = text[4:].split("\n---\n", 1)[1]
    nb = jupytext.reads(text, fmt="md:myst")
    figures: dict[str, int] = {}  # figure names in the chapter's order: the numbers the page gives them
    for cell in nb.cells:
        name = cell.metadata.get("mystnb", {}).get("figure", {}).get("name") if cell.cell_type == "code" else None
        if name:
            figures[name] = len(figures) + 1
    cells = [nbformat.v4.new_markdown_cell(INSTALL)]
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            src = plain_markdown(cell.source, (root / chapter.source).parent, root, figures)
            if src.strip():
                cells.append(nbformat.v4.new_markdown_cell(src))
        elif cell.cell_type == "code":
            tags = [t for t in cell.metadata.get("tags", []) if t not in ("remove-cell", "remove-input")]
            new = nbformat.v4.new_code_cell(cell.source)
            if tags:
                new.metadata["tags"] = tags
            cells.append(new)
            figure = cell.metadata.get("mystnb", {}).get("figure", {})
            if figure.get("caption"):  # the page's caption, under the cell that draws the figure
                number = figures.get(figure.get("name"), len(figures))
                caption = _roles(" ".join(str(figure["caption"]).split()), root, figures)
                cells.append(nbformat.v4.new_markdown_cell(f"**Figure {number}.** {caption}"))
    out = nbformat.v4.new_notebook(cells=cells)
    out.nbformat_minor = 5
    out.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    out.metadata["language_info"] = {"name": "python"}
    for i, cell in enumerate(out.cells):
        cell["id"] = f"cell-{i}"  # stable ids: the same source gives the same file
    return dict(out)
