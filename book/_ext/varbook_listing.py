"""Library listings without raw docstrings, and a link to the API reference under each.

Chapters show the library's code with ``literalinclude`` and ``:pyobject:``. The
docstrings of that code are reStructuredText written for the API reference (``:cite:``
roles, math); shown raw in a listing they are noise. For a ``literalinclude`` of a
Python file with ``:pyobject:``, this extension drops the docstrings of the object (its
own, those of the functions and classes defined inside it, and attribute docstrings)
from the listing, and adds under it a link to the object's entry in the API reference
(``book/api.md``): the object itself when it is documented there, else its nearest
documented parent (a private helper links to its module).

A listing is shown dedented (a method starts at column 0). The library is formatted at
120 columns, the book's pages fit 88 (``book/ruff.toml``): a listing with a longer line
is laid out again by ``ruff format`` at ``varbook_listing_width`` columns (88; ``None``
keeps the file's layout). Only line breaks change: the listing is kept only if it
parses to the same syntax tree as the file's code.

Listings whose lines are chosen or numbered by other options (``:lines:``,
``:start-after:``, ``:lineno-match:``, ``:emphasize-lines:``, ...) are left as they are.
"""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
import textwrap
from functools import cache
from pathlib import Path

from docutils import nodes
from sphinx.directives.code import LiteralInclude
from sphinx.transforms.post_transforms import SphinxPostTransform
from sphinx.util.nodes import make_refnode

# The site build puts src on sys.path; the reader notebooks use the same lookup.
from varbook.book.listing import find_object, object_span

_DEFS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
# Options that select or number lines: stripping lines would change what they mean.
_KEEP_AS_IS = (
    "lines",
    "start-after",
    "start-at",
    "end-before",
    "end-at",
    "lineno-match",
    "lineno-start",
    "linenos",
    "emphasize-lines",
    "diff",
    "dedent",
    "prepend",
    "append",
)


def _is_string(stmt: ast.stmt) -> bool:
    return (
        isinstance(stmt, ast.Expr)
        and isinstance(stmt.value, ast.Constant)
        and isinstance(stmt.value.value, str)
    )


def docstring_lines(source: str, pyobject: str) -> set[int]:
    """Line numbers (1-based) to drop from the listing of ``pyobject`` in ``source``.

    They are the docstrings of the object and of every function and class defined inside
    it, the blank lines right after those, and attribute docstrings (a string statement
    right after an assignment in a class body). A docstring that is the whole body of a
    definition stays: without it the code would not be valid Python.
    """
    lines = source.splitlines()
    drop: set[int] = set()
    root = find_object(ast.parse(source), pyobject)
    for node in ast.walk(root):
        if not isinstance(node, _DEFS):
            continue
        body = getattr(node, "body", [])
        if body and _is_string(body[0]) and len(body) > 1:
            first, last = body[0].lineno, body[0].end_lineno or body[0].lineno
            # Only a docstring on lines of its own (not ``def f(): "doc"; ...``).
            header_end = getattr(node, "lineno", 0)
            if first > header_end and body[1].lineno > last:
                drop.update(range(first, last + 1))
                after = last + 1
                while after <= len(lines) and not lines[after - 1].strip():
                    drop.add(after)
                    after += 1
        if isinstance(node, ast.ClassDef):
            for prev, stmt in zip(body, body[1:], strict=False):
                if isinstance(prev, (ast.Assign, ast.AnnAssign)) and _is_string(stmt):
                    end = stmt.end_lineno or stmt.lineno
                    drop.update(range(stmt.lineno, end + 1))
    return drop


def strip_docstrings(source: str, pyobject: str) -> str:
    """The listing of ``pyobject`` (decorators to last line) without its docstrings."""
    first, last = object_span(source, pyobject)
    drop = docstring_lines(source, pyobject)
    lines = source.splitlines(keepends=True)
    return "".join(lines[i - 1] for i in range(first, last + 1) if i not in drop)


def _ruff() -> str | None:
    try:
        from ruff.__main__ import find_ruff_bin

        return str(find_ruff_bin())
    except (ImportError, FileNotFoundError):
        here = str(Path(sys.executable).parent)
        return shutil.which("ruff", path=here) or shutil.which("ruff")


@cache
def fit_width(text: str, width: int | None = 88) -> str:
    """Python code ``text``, dedented and laid out by ``ruff format`` in ``width`` cols.

    Only dedented when every line fits already, when ``width`` is None, when ruff is
    missing or fails, or when the result does not parse to the same syntax tree (only
    line breaks and brackets may change, never the code). Formatter pragmas
    (``# fmt: skip``, ``# fmt: off``) are dropped from a listing laid out again, and
    a comment on a line of its own that is still too long is wrapped onto more comment
    lines (the formatter never touches comments).
    """
    return wrap_comments(_fit_code(text, width), width)


def wrap_comments(code: str, width: int | None = 88) -> str:
    """Wrap the comments that stand on lines of their own and pass ``width`` columns.

    >>> print(wrap_comments("    # " + "word " * 20, 40), end="")
        # word word word word word word word
        # word word word word word word word
        # word word word word word word
    """
    if width is None:
        return code
    out = []
    for line in code.splitlines(keepends=True):
        body = line.rstrip("\n")
        stripped = body.lstrip()
        if len(body) > width and stripped.startswith("# "):
            indent = body[: len(body) - len(stripped)]
            room = width - len(indent) - 2
            pieces = textwrap.wrap(stripped[2:], room, break_long_words=False)
            out += [f"{indent}# {piece}\n" for piece in pieces]
        else:
            out.append(line)
    return "".join(out)


def _fit_code(text: str, width: int | None) -> str:
    code = textwrap.dedent(text)
    if width is None or all(len(line) <= width for line in code.splitlines()):
        return code
    ruff = _ruff()
    if ruff is None:
        return code
    # Formatter pragmas keep the library's own layout; the listing needs a new one.
    code = re.sub(r"[ \t]*# fmt: skip[ \t]*$", "", code, flags=re.M)
    code = re.sub(r"^[ \t]*# fmt: (?:off|on)[ \t]*\n", "", code, flags=re.M)
    args = ["format", "--isolated", f"--line-length={width}", "--stdin-filename=x.py"]
    out = subprocess.run([ruff, *args, "-"], input=code, capture_output=True, text=True)
    if out.returncode != 0:
        return code
    try:
        same = ast.dump(ast.parse(out.stdout)) == ast.dump(ast.parse(code))
    except SyntaxError:
        return code
    return out.stdout if same else code


def module_name(path: Path | str) -> str | None:
    """The dotted module of a Python file, from the packages around it."""
    path = Path(path)
    parts = [] if path.name == "__init__.py" else [path.stem]
    folder = path.parent
    while (folder / "__init__.py").exists():
        parts.insert(0, folder.name)
        folder = folder.parent
    return ".".join(parts) if parts and (path.parent / "__init__.py").exists() else None


class listing_ref(nodes.General, nodes.Element):
    """Placeholder under a listing; becomes a link to the API reference (or nothing)."""


class Listing(LiteralInclude):
    """``literalinclude`` that drops docstrings from ``:pyobject:`` listings."""

    def run(self) -> list[nodes.Node]:
        result = super().run()
        pyobject = self.options.get("pyobject")
        if not pyobject or any(o in self.options for o in _KEEP_AS_IS):
            return result
        _, filename = self.env.relfn2path(self.arguments[0])
        if not filename.endswith(".py"):
            return result
        blocks = [b for r in result for b in r.findall(nodes.literal_block)]
        if len(blocks) != 1:
            return result  # a warning from literalinclude: leave it
        block = blocks[0]
        source = Path(filename).read_text(
            encoding=self.options.get("encoding", "utf-8")
        )
        try:
            first, last = object_span(source, pyobject)
            text = strip_docstrings(source, pyobject)
        except (SyntaxError, ValueError):
            return result
        text = fit_width(text, self.config.varbook_listing_width)
        lines = source.splitlines(keepends=True)
        if block.astext() == "".join(lines[first - 1 : last]):
            # rawsource == text: highlighted as code, not as a parsed literal
            block.rawsource = text
            block.children = []
            block += nodes.Text(text)
        module = module_name(filename)
        if module:
            result.append(listing_ref("", module=module, pyobject=pyobject))
        return result


class ResolveListingRefs(SphinxPostTransform):
    """Turn each :class:`listing_ref` into a link to the object or its parent."""

    default_priority = 20

    def run(self, **kwargs) -> None:
        domain = self.env.get_domain("py")
        objects = domain.objects  # type: ignore[attr-defined]
        modules = domain.modules  # type: ignore[attr-defined]
        for node in list(self.document.findall(listing_ref)):
            module, pyobject = node["module"], node["pyobject"]
            parts = pyobject.split(".")
            candidates = [
                ".".join([module, *parts[:n]]) for n in range(len(parts), 0, -1)
            ]
            target = None
            for name in candidates:
                entry = objects.get(name)
                if entry is not None and not entry.aliased:
                    target = (name, entry.docname, entry.node_id)
                    break
            if target is None and module in modules:
                entry = modules[module]
                target = (module, entry.docname, entry.node_id)
            if target is None:
                node.parent.remove(node)
                continue
            name, docname, node_id = target
            label = nodes.literal(name, name, classes=["xref", "py"])
            ref = make_refnode(
                self.app.builder, self.env.docname, docname, node_id, label, name
            )
            para = nodes.paragraph("", "", classes=["varbook-listing-ref"])
            para += nodes.Text("API reference: ")
            para += ref
            node.replace_self(para)


def setup(app):
    app.add_config_value("varbook_listing_width", 88, "env", [int, type(None)])
    app.add_directive("literalinclude", Listing, override=True)
    app.add_node(listing_ref)
    app.add_post_transform(ResolveListingRefs)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
