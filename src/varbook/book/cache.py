"""The inputs key of a chapter run, which decides when an executed chapter can be reused.

A chapter's result depends on more than its notebook: on the library modules it imports, directly
or through other modules (:func:`imported_files`; an edit of a module no chapter reaches leaves
its key alone), the pinned toolchain (``constraints.txt``), its claims file, its committed
full-profile record (which its notes print), the profile and the seed. Jupyter Book's own
execution cache (jupyter-cache) hashes only a notebook's code cells, so it cannot see an edit of
the library or of the pins, nor a profile chosen through the environment; hence this key, which
the runner (cached rebuilds), the seed sweeps (stale aggregates) and the full-profile budget run
(stale records) share.
"""

from __future__ import annotations

import ast
import hashlib
import json
import re
import warnings
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .runner import Chapter

KEY_VERSION = "2"
"""Bumped when what goes into the key changes, so that every older stamp misses."""


def _digest_files(h, root: Path, paths: list[Path]) -> None:
    for path in paths:
        h.update(path.relative_to(root).as_posix().encode() + b"\0")
        h.update(path.read_bytes() if path.exists() else b"<absent>")
        h.update(b"\0")


def library_files(root: Path) -> list[Path]:
    """The library's source files (``src/varbook``), without caches, in a fixed order."""
    base = root / "src" / "varbook"
    if not base.is_dir():
        return []
    return sorted(
        p for p in base.rglob("*") if p.is_file() and "__pycache__" not in p.parts and p.suffix not in (".pyc", ".pyo")
    )


_CODE_CELL = re.compile(r"^```\{code-cell\}[^\n]*\n(.*?)^```", re.M | re.S)


def _module_file(base: Path, name: str) -> list[Path]:
    """The files that importing the module ``name`` (``varbook.a.b``) runs: its packages' ``__init__.py`` and itself."""
    parts = name.split(".")
    if parts[0] != "varbook":
        return []
    files = []
    for i in range(1, len(parts) + 1):
        folder = base.parent.joinpath(*parts[:i])
        if (folder / "__init__.py").is_file():
            files.append(folder / "__init__.py")
        elif folder.with_suffix(".py").is_file():
            files.append(folder.with_suffix(".py"))
            break
        else:
            break
    return files


def _imports(tree: ast.AST, module: str, is_package: bool) -> set[str]:
    """Absolute names of the modules (and possible submodules) a parsed module imports, anywhere in it."""
    names: set[str] = set()
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)] if node.level > 1 else anchor
                base = ".".join(anchor + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            names.add(base)
            names |= {f"{base}.{a.name}" for a in node.names}  # ``from pkg import submodule``
    return {n for n in names if n == "varbook" or n.startswith("varbook.")}


def imported_files(root: Path, code: str) -> list[Path]:
    """The library files that running ``code`` imports, followed through the library's own imports
    (absolute and relative, at module level or inside functions), plus the library's data files."""
    base = root / "src" / "varbook"
    if not base.is_dir():
        return []
    try:
        todo = sorted(_imports(ast.parse(code), "__chapter__", False))
    except SyntaxError:
        return library_files(root)  # a chapter we cannot read: depend on the whole library
    seen: set[Path] = set()
    while todo:
        for path in _module_file(base, todo.pop()):
            if path in seen:
                continue
            seen.add(path)
            rel = path.relative_to(base.parent).with_suffix("")
            is_package = rel.name == "__init__"
            module = ".".join(rel.parent.parts if is_package else rel.parts)
            try:
                with warnings.catch_warnings():  # an invalid escape in a docstring is not our concern here
                    warnings.simplefilter("ignore")
                    tree = ast.parse(path.read_text(encoding="utf-8"))
            except SyntaxError:
                return library_files(root)  # a module we cannot read: depend on the whole library
            todo.extend(_imports(tree, module, is_package))
    data = [p for p in library_files(root) if p.suffix != ".py"]
    return sorted(seen | set(data))


def chapter_code(root: Path, chapter: Chapter) -> str:
    """The code cells of a chapter's MyST source, one after the other (cells that are not Python left out)."""
    text = (root / chapter.source).read_text(encoding="utf-8") if (root / chapter.source).exists() else ""
    cells = []
    for cell in _CODE_CELL.findall(text):
        lines = cell.splitlines()
        if lines and lines[0].strip() == "---":  # YAML options block
            end = lines.index("---", 1) if "---" in lines[1:] else 0
            lines = lines[end + 1 :]
        body = "\n".join(line for line in lines if not line.startswith(":"))
        try:
            ast.parse(body)
        except SyntaxError:
            continue
        cells.append(body)
    return "\n".join(cells)


def chapter_files(root: Path, chapter: Chapter, with_record: bool = True) -> list[Path]:
    """The chapter's own inputs: its MyST source, its claims file and (its notes print it) its
    committed full-profile record."""
    src = root / chapter.source
    files = [src, src.with_name(f"{chapter.slug}.claims.yml")]
    return files + [root / "results" / "full" / f"{chapter.slug}.json"] if with_record else files


def inputs_key(root: Path, chapter: Chapter, profile: str, seed: int | None = None, *, with_record: bool = True) -> str:
    """A SHA-256 over everything a chapter run depends on; ``seed=None`` gives the key of a sweep over seeds.

    Editing the chapter changes its key alone; editing a library module changes the key of every
    chapter that imports it (:func:`imported_files`); editing ``constraints.txt`` changes every key. ``with_record=False`` leaves out the committed full record
    (the key stored inside that record).
    """
    h = hashlib.sha256(f"varbook-inputs {KEY_VERSION}\0{profile}\0{'*' if seed is None else seed}\0".encode())
    _digest_files(h, root, chapter_files(root, chapter, with_record))
    _digest_files(h, root, [root / "constraints.txt", *imported_files(root, chapter_code(root, chapter))])
    return h.hexdigest()


def stamp_path(root: Path, chapter: Chapter, profile: str) -> Path:
    return root / "_build" / "cache" / profile / f"{chapter.slug}.json"


def executed_path(root: Path, chapter: Chapter, profile: str) -> Path:
    """Where the runner keeps the executed notebook of ``chapter``."""
    return root / "_build" / "executed" / profile / chapter.source.with_suffix(".ipynb")


def record_path(root: Path, chapter: Chapter, profile: str) -> Path:
    """Where the runner keeps the claims record of ``chapter``."""
    return root / "_build" / "results" / profile / f"{chapter.slug}.json"


def is_fresh(root: Path, chapter: Chapter, profile: str, seed: int) -> bool:
    """True when the last successful run of ``chapter`` had the same inputs key and its outputs are still there."""
    stamp = stamp_path(root, chapter, profile)
    if not (stamp.exists() and executed_path(root, chapter, profile).exists()):
        return False
    try:
        saved = json.loads(stamp.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        return False
    return saved.get("key") == inputs_key(root, chapter, profile, seed)


def write_stamp(root: Path, chapter: Chapter, profile: str, seed: int, seconds: float) -> None:
    """Remember a successful run of ``chapter`` (its key, seed, time and date)."""
    stamp = stamp_path(root, chapter, profile)
    stamp.parent.mkdir(parents=True, exist_ok=True)
    stamp.write_text(
        json.dumps(
            {
                "key": inputs_key(root, chapter, profile, seed),
                "seed": seed,
                "seconds": round(seconds, 2),
                "date": datetime.now(UTC).isoformat(timespec="seconds"),
            }
        )
        + "\n",
        encoding="utf-8",
    )


def drop_stamp(root: Path, chapter: Chapter, profile: str) -> None:
    stamp_path(root, chapter, profile).unlink(missing_ok=True)
