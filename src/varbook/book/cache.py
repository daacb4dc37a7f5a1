"""The inputs key of a chapter run, which decides when an executed chapter can be reused.

A chapter's result depends on more than its notebook: on the library it imports
(``src/varbook``), the pinned toolchain (``constraints.txt``), its claims file, its committed
full-profile record (which its notes print), the profile and the seed. Jupyter Book's own
execution cache (jupyter-cache) hashes only a notebook's code cells, so it cannot see an edit of
the library or of the pins, nor a profile chosen through the environment; hence this key, which
the runner (cached rebuilds), the seed sweeps (stale aggregates) and the full-profile budget run
(stale records) share.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .runner import Chapter

KEY_VERSION = "1"
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


def chapter_files(root: Path, chapter: Chapter, with_record: bool = True) -> list[Path]:
    """The chapter's own inputs: its MyST source, its claims file and (its notes print it) its
    committed full-profile record."""
    src = root / chapter.source
    files = [src, src.with_name(f"{chapter.slug}.claims.yml")]
    return files + [root / "results" / "full" / f"{chapter.slug}.json"] if with_record else files


def inputs_key(root: Path, chapter: Chapter, profile: str, seed: int | None = None, *, with_record: bool = True) -> str:
    """A SHA-256 over everything a chapter run depends on; ``seed=None`` gives the key of a sweep over seeds.

    Editing the chapter changes its key alone; editing the library or ``constraints.txt``
    changes every chapter's key. ``with_record=False`` leaves out the committed full record
    (the key stored inside that record).
    """
    h = hashlib.sha256(f"varbook-inputs {KEY_VERSION}\0{profile}\0{'*' if seed is None else seed}\0".encode())
    _digest_files(h, root, chapter_files(root, chapter, with_record))
    _digest_files(h, root, [root / "constraints.txt", *library_files(root)])
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
