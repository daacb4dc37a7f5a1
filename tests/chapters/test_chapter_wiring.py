"""Checks of every chapter (and of the template ``book/_template/chapter.md``) that need no execution.

``make chapters`` executes the chapters (their robust claims assert there); these tests
check what a reader relies on: every claim a chapter checks is in its claims file (and every
claim there is checked), every asserted claim carries a negative control, and the library
code the chapter shows exists and imports. A chapter in ``_toc.yml`` is picked up here
without a test file of its own; what it adds to the library is tested in tests/<family>/.
The ``check_*`` functions take a chapter's source, so that the scaffold's test can run them
on a chapter it has just made.
"""

from __future__ import annotations

import ast
import importlib
import re
from functools import cache
from pathlib import Path

import jupytext
import pytest

from varbook.book import chapters, load_specs, project_root

ROOT = project_root(Path(__file__).parent)
SOURCES = {c.slug: ROOT / c.source for c in chapters(ROOT)} | {"_template": ROOT / "book" / "_template" / "chapter.md"}
REPORT_METHODS = ("check", "check_true", "skip")
LISTING = re.compile(r"```\{literalinclude\} (\S+)\n(?::[\w-]+:.*\n)*?:pyobject: (\S+)")


def specs(source: Path) -> dict:
    return load_specs(source.with_name(f"{source.stem}.claims.yml"))


def is_report_call(node: ast.AST) -> bool:
    return (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and isinstance(node.func.value, ast.Name)
        and node.func.value.id == "report"
        and node.func.attr in REPORT_METHODS
    )


@cache
def report_calls(source: Path) -> list[tuple[ast.Call, frozenset[str]]]:
    """The chapter's calls ``report.check``, ``report.check_true``, ``report.skip``, each with
    the claim keys it may check: its first argument when that is a string; when it is a name
    (a loop over claims), the keys of the claims file written as strings in the same cell."""
    declared = set(specs(source))
    calls = []
    for cell in jupytext.read(source).cells:
        if cell.cell_type != "code":
            continue
        tree = ast.parse(cell.source)
        strings = {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)}
        for node in filter(is_report_call, ast.walk(tree)):
            first = node.args[0] if node.args else None
            if isinstance(first, ast.Constant) and isinstance(first.value, str):
                calls.append((node, frozenset({first.value})))
            else:
                assert isinstance(first, ast.Name), f"{source.stem}, line {node.lineno}: check a claim by its key"
                calls.append((node, frozenset(strings & declared)))
    return calls


def check_claims_wiring(source: Path) -> None:
    """Every claim the chapter checks is in its claims file, and every claim there is checked."""
    used = set().union(*(keys for _, keys in report_calls(source)))
    declared = set(specs(source))
    assert used, f"{source.stem} checks no claim"
    assert used <= declared, f"not in the claims file of {source.stem}: {sorted(used - declared)}"
    assert declared <= used, f"never checked in {source.stem}: {sorted(declared - used)}"


def check_controls(source: Path) -> None:
    """Every asserted claim that is not a sanity check is checked with a negative control."""
    spec = specs(source)
    asserted = {k for k, c in spec.items() if c["tier"] in ("robust", "full") and c.get("kind") != "sanity"}
    controlled: set[str] = set()
    for call, keys in report_calls(source):
        control = "control" if call.func.attr == "check" else "control_holds"
        names = {k.arg for k in call.keywords}  # None: a ``**kwargs`` splat, which may carry it
        if call.func.attr == "skip" or control in names or None in names:
            controlled |= keys
    assert asserted <= controlled, f"{source.stem}: no negative control for {sorted(asserted - controlled)}"


def listings(source: Path) -> list[tuple[str, str]]:
    """The ``literalinclude`` listings of the chapter: (path, pyobject)."""
    return LISTING.findall(source.read_text(encoding="utf-8"))


def check_listing(source: Path, path: str, pyobject: str, root: Path = ROOT) -> None:
    """A listing shows an object of the library that exists and is callable."""
    file = (source.parent / path).resolve()
    src = (root / "src").resolve()
    assert file.is_relative_to(src) and file.exists(), f"{source.stem}: {path} is not in src/"
    module = ".".join(file.relative_to(src).with_suffix("").parts)
    obj = importlib.import_module(module.removesuffix(".__init__"))
    for name in pyobject.split("."):
        obj = getattr(obj, name)
    assert callable(obj)


def test_every_chapter_is_checked():
    assert len(SOURCES) > 1 and all(p.exists() for p in SOURCES.values())


@pytest.mark.parametrize("slug", sorted(SOURCES))
def test_claims_checked_are_in_the_claims_file_and_back(slug):
    check_claims_wiring(SOURCES[slug])


@pytest.mark.parametrize("slug", sorted(SOURCES))
def test_asserted_claims_carry_a_negative_control(slug):
    check_controls(SOURCES[slug])


@pytest.mark.parametrize("slug", sorted(SOURCES))
def test_the_chapter_shows_library_code(slug):
    assert listings(SOURCES[slug]), f"{slug}: show the library code with literalinclude and :pyobject:"


@pytest.mark.parametrize(
    "slug, path, pyobject", [(slug, *item) for slug, source in sorted(SOURCES.items()) for item in listings(source)]
)
def test_shown_library_code_exists(slug, path, pyobject):
    check_listing(SOURCES[slug], path, pyobject)


def test_a_missing_control_or_claim_is_caught(tmp_path):
    """The checks fail on a chapter that drops a control or checks a claim its file lacks."""
    source = SOURCES["_template"]
    text = source.read_text(encoding="utf-8")
    claims = source.with_name(f"{source.stem}.claims.yml").read_text(encoding="utf-8")
    robust = next(k for k, c in specs(source).items() if c["tier"] == "robust" and c.get("kind") != "sanity")
    call = re.search(rf'report\.check\("{robust}", ([^\n]*), control=[^\n]*\)', text)
    assert call, f"the template checks {robust} on one line with a control"
    for name, chapter in (
        ("no_control", text.replace(call.group(0), f'report.check("{robust}", {call.group(1)})')),
        ("unknown", text.replace(f'report.check("{robust}"', 'report.check("not_a_claim"')),
    ):
        bad = tmp_path / f"{name}.md"
        bad.write_text(chapter, encoding="utf-8")
        bad.with_name(f"{name}.claims.yml").write_text(claims, encoding="utf-8")
        check = check_controls if name == "no_control" else check_claims_wiring
        with pytest.raises(AssertionError):
            check(bad)
