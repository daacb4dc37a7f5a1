"""Full-profile runs within a time budget: the one command to run when a GPU machine is lent.

``python -m varbook.book run --profile full --missing --budget SECONDS`` runs, in order, the
chapters that lack a committed record ``results/full/<slug>.json``, then those whose record is
stale (made from other inputs: :func:`varbook.book.cache.inputs_key`), and copies each new record
there. It does not start a chapter that would not finish inside the budget, judging by the
chapter's last full record (or :data:`DEFAULT_ESTIMATE` without one), so that several short
loans together cover the book. With no GPU it runs the same on the CPU; the record names the
device.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from . import cache
from .records import full_record_path
from .runner import Chapter, Outcome, Task, _report, _store, project_root, run_task, select

DEFAULT_ESTIMATE = 300.0
"""Seconds assumed for a chapter never run in the full profile: the book's limit per chapter."""


def pending(root: Path, slugs: list[str] | None = None, seed: int = 0) -> list[tuple[Chapter, str, float]]:
    """Chapters that need a full run, as (chapter, why, estimated seconds): missing records first, then stale ones."""
    missing, stale = [], []
    for ch in select(slugs, root):
        path = full_record_path(ch.slug, root)
        if not path.exists():
            missing.append((ch, "no record", DEFAULT_ESTIMATE))
            continue
        rec = json.loads(path.read_text(encoding="utf-8"))
        if rec.get("inputs_key") != _record_key(root, ch, seed):
            stale.append((ch, "stale record", float(rec.get("wall_seconds") or DEFAULT_ESTIMATE)))
    stale.sort(key=lambda t: json.loads(full_record_path(t[0].slug, root).read_text()).get("date", ""))
    return missing + stale


def _record_key(root: Path, chapter: Chapter, seed: int) -> str:
    """The key a committed record is compared with: the chapter's inputs without its own record,
    which the run itself replaces."""
    return cache.inputs_key(root, chapter, "full", seed, with_record=False)


def run_missing(
    budget: float, slugs: list[str] | None = None, seed: int = 0, root: Path | None = None
) -> list[Outcome]:
    """Run the :func:`pending` chapters in the full profile, one at a time, within ``budget`` seconds."""
    root = root or project_root()
    todo = pending(root, slugs, seed)
    print(
        f"full profile: {len(todo)} chapter(s) need a run"
        + (f" ({', '.join(f'{c.slug}: {why}' for c, why, _ in todo)})" if todo else "")
        + f"; budget {budget:.0f} s",
        flush=True,
    )
    start = time.perf_counter()
    outcomes: list[Outcome] = []
    for i, (ch, _why, estimate) in enumerate(todo):
        left = budget - (time.perf_counter() - start)
        if estimate > left:
            rest = ", ".join(c.slug for c, _, _ in todo[i:])
            print(
                f"stopping: {ch.slug} needs about {estimate:.0f} s and {max(left, 0):.0f} s are left; "
                f"still to run: {rest}",
                flush=True,
            )
            break
        key = _record_key(root, ch, seed)
        result = run_task(Task(ch.slug, "full", seed, str(root)))
        outcome = _report(_store(root, ch, result))
        if result.record is not None:
            record = dict(result.record, inputs_key=key)
            dest = full_record_path(ch.slug, root)
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_text(json.dumps(record, indent=2, default=str) + "\n", encoding="utf-8")
            print(f"         record -> {dest.relative_to(root)}", flush=True)
        outcomes.append(outcome)
    return outcomes
