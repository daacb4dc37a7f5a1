"""Find a definition in a Python file by its dotted name, as ``literalinclude``'s ``:pyobject:`` does.

Shared by the site's listing extension (``book/_ext/varbook_listing.py``) and the reader
notebooks (:mod:`varbook.book.reader`), which show the same library code.
"""

from __future__ import annotations

import ast
import textwrap
from pathlib import Path

DEFINITIONS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)


def find_object(tree: ast.Module, pyobject: str) -> ast.AST:
    """The definition named by the dotted ``pyobject`` (``"f"``, ``"Class.method"``).

    >>> find_object(ast.parse("class A:\\n    def f(self): pass"), "A.f").name
    'f'
    """
    scope: ast.AST = tree
    for name in pyobject.split("."):
        found = [n for n in getattr(scope, "body", []) if isinstance(n, DEFINITIONS) and n.name == name]
        if not found:
            raise ValueError(f"no definition named {pyobject!r}")
        scope = found[-1]  # like Python (and Sphinx's find_tags): the last one wins
    return scope


def object_span(source: str, pyobject: str) -> tuple[int, int]:
    """First (decorators included) and last line (1-based) of ``pyobject`` in ``source``."""
    node = find_object(ast.parse(source), pyobject)
    assert isinstance(node, DEFINITIONS)
    first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
    return first, node.end_lineno or node.lineno


def object_source(path: Path | str, pyobject: str) -> str:
    """The code of ``pyobject`` in the file ``path``, docstrings included, dedented."""
    source = Path(path).read_text(encoding="utf-8")
    first, last = object_span(source, pyobject)
    return textwrap.dedent("".join(source.splitlines(keepends=True)[first - 1 : last]))
