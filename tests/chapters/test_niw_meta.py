"""Checks of the chapter book/bayes/niw_meta.md that need no execution.

``make chapters`` executes the chapter (its robust claims assert there); these tests
check what a reader relies on: every claim the chapter checks is in its claims file (and
every claim there is checked), every asserted claim carries a negative control, and the
library code the chapter shows exists and imports. Test what the chapter adds to the
library in tests/<family>/, next to the module.
"""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import jupytext
import pytest

from varbook.book import load_specs, project_root

SLUG = "niw_meta"
PART = "bayes"
ROOT = project_root(Path(__file__).parent)
SOURCE = ROOT / "book" / PART / f"{SLUG}.md"
SPECS = load_specs(SOURCE.with_name(f"{SLUG}.claims.yml"))
REPORT_METHODS = ("check", "check_true", "skip")


def report_calls() -> list[ast.Call]:
    """The chapter's calls ``report.check``, ``report.check_true``, ``report.skip``."""
    cells = [c.source for c in jupytext.read(SOURCE).cells if c.cell_type == "code"]
    return [
        node
        for tree in map(ast.parse, cells)
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and isinstance(node.func.value, ast.Name)
        and node.func.value.id == "report"
        and node.func.attr in REPORT_METHODS
    ]


def key(call: ast.Call) -> str:
    first = call.args[0] if call.args else None
    assert isinstance(first, ast.Constant) and isinstance(first.value, str), (
        f"line {call.lineno}: check a claim by its key in {SLUG}.claims.yml"
    )
    return first.value


def test_claims_checked_are_in_the_claims_file_and_back():
    used = {key(c) for c in report_calls()}
    assert used, "the chapter checks no claim"
    assert used <= set(SPECS), f"not in {SLUG}.claims.yml: {sorted(used - set(SPECS))}"
    assert set(SPECS) <= used, f"never checked: {sorted(set(SPECS) - used)}"


def test_asserted_claims_carry_a_negative_control():
    for call in report_calls():
        spec = SPECS[key(call)]
        asserted = spec["tier"] in ("robust", "full")
        if call.func.attr == "skip" or not asserted or spec.get("kind") == "sanity":
            continue
        control = "control" if call.func.attr == "check" else "control_holds"
        keywords = {k.arg for k in call.keywords}
        assert control in keywords, f"claim {key(call)!r} has no negative control"


LISTINGS = re.findall(
    r"```\{literalinclude\} (\S+)\n(?::[\w-]+:.*\n)*?:pyobject: (\S+)",
    SOURCE.read_text(encoding="utf-8"),
)


def test_the_chapter_shows_library_code():
    assert LISTINGS, "show the library code with literalinclude and :pyobject:"


@pytest.mark.parametrize("path, pyobject", LISTINGS)
def test_shown_library_code_exists(path, pyobject):
    file = (SOURCE.parent / path).resolve()
    src = (ROOT / "src").resolve()
    assert file.is_relative_to(src) and file.exists(), f"{path} is not in src/"
    module = ".".join(file.relative_to(src).with_suffix("").parts)
    obj = importlib.import_module(module.removesuffix(".__init__"))
    for name in pyobject.split("."):
        obj = getattr(obj, name)
    assert callable(obj)
