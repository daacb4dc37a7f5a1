"""The API reference: every public module of a ``varbook`` subpackage, found when built.

In reStructuredText (inside ``{eval-rst}`` in a MyST page)::

    .. varbook-api:: varbook.vi

documents the package ``varbook.vi`` and then each of its public modules (names without
a leading underscore, ``__main__`` aside), each under a rubric with its dotted name.
Every module is documented with ``:members:`` and ``:ignore-module-all:``: a module
shows the objects it defines, not those it imports, so a function re-exported by its
package is described once, where it is defined. A module added to the library appears
without an edit to the page.
"""

from __future__ import annotations

import importlib
import pkgutil

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.util.docutils import SphinxDirective
from sphinx.util.parsing import nested_parse_to_nodes


def public_modules(package: str) -> list[str]:
    """``package`` and its public modules and subpackages, recursively, sorted."""
    pkg = importlib.import_module(package)
    names = [package]
    for info in pkgutil.iter_modules(getattr(pkg, "__path__", [])):
        if info.name.startswith("_"):
            continue
        name = f"{package}.{info.name}"
        names += public_modules(name) if info.ispkg else [name]
    return names


def missing_package(module: str) -> str | None:
    """The optional package (a peer) that ``module`` needs and that is not installed."""
    try:
        importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.split(".")[0] != module.split(".")[0]:
            return exc.name
        raise
    return None


def api_rst(package: str) -> list[str]:
    """The reStructuredText that documents ``package`` and its public modules.

    A module that needs a package this build lacks (a peer library) gets a note instead
    of its entries, so that the book builds without the ``peers`` extra.
    """
    lines: list[str] = []
    for i, name in enumerate(public_modules(package)):
        if i:
            lines += [f".. rubric:: ``{name}``", ""]
        missing = missing_package(name)
        if missing:
            lines += [f"Not documented in this build: it needs ``{missing}``.", ""]
            continue
        lines += [
            f".. automodule:: {name}",
            "   :members:",
            "   :ignore-module-all:",
            "",
        ]
    return lines


class VarbookApi(SphinxDirective):
    """``.. varbook-api:: PACKAGE``: the package and all its public modules."""

    required_arguments = 1

    def run(self) -> list[nodes.Node]:
        package = self.arguments[0]
        content = StringList(api_rst(package), source=f"<varbook-api {package}>")
        return nested_parse_to_nodes(self.state, content)


def setup(app):
    app.add_directive("varbook-api", VarbookApi)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
