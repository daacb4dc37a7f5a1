"""Seed sweeps: every chapter at several seeds, and per claim, in how many seeds it held.

``python -m varbook.book sweep --seeds 0-4`` keeps each seed's record under
``_build/sweeps/<profile>/<slug>/seed-<k>.json`` (a seed whose inputs are unchanged is not run
again; the run at the book's seed 0 also becomes the build's executed chapter) and writes one aggregate per chapter, ``results/sweeps/<profile>/<slug>.json``, which is
committed. The aggregate carries the sweep's inputs key (:func:`varbook.book.cache.inputs_key`
without a seed): the dashboard marks it stale when the chapter or the library has changed since.
"""

from __future__ import annotations

import json
import re
import statistics
from datetime import UTC, datetime
from pathlib import Path

from ..runtime import resolve_profile
from . import cache
from .runner import Chapter, Task, _store, project_root, run_tasks, select

BOOK_SEED = 0
"""The seed the book is built with; a sweep's run at this seed also serves as the build's run."""

_CMP = re.compile(r"^\s*(<=|>=|<|>)\s*(-?[0-9.eE+-]+)\s*$")


def parse_seeds(text: str) -> list[int]:
    """Seeds from ``"0-4"``, ``"0,2,5"`` or ``"0-2,7"``.

    >>> parse_seeds("0-2,7")
    [0, 1, 2, 7]
    """
    seeds: list[int] = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        m = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
        if not m:
            raise ValueError(f"bad seeds {text!r}: use a range and/or a list, such as 0-4 or 0,2,5")
        lo, hi = int(m.group(1)), int(m.group(2) or m.group(1))
        if hi < lo:
            raise ValueError(f"bad seed range {part!r}: the end is before the start")
        seeds += [s for s in range(lo, hi + 1) if s not in seeds]
    if not seeds:
        raise ValueError("no seeds given")
    return seeds


def margin(value, comparison: str) -> float | None:
    """How far ``value`` is inside its test (negative: it fails by that much); the worst element of a list.

    >>> margin(0.08, "< 0.1"), margin([3.0, 5.0], ">= 2")
    (0.02, 1.0)
    """
    m = _CMP.match(comparison or "")
    values = value if isinstance(value, list) else [value]
    if not m or not values or not all(isinstance(v, int | float) for v in values):
        return None
    op, t = m.group(1), float(m.group(2))
    gaps = [(t - v) if op in ("<", "<=") else (v - t) for v in values]
    return round(min(gaps), 12)


def _worst_value(value, comparison: str):
    """The element of a list value nearest to failing its test (the value itself when scalar)."""
    if not isinstance(value, list):
        return value if isinstance(value, int | float) else None
    scored = [(margin(v, comparison), v) for v in value if isinstance(v, int | float)]
    scored = [(m, v) for m, v in scored if m is not None]
    return min(scored)[1] if scored else None


def _spread(values: list[float]) -> dict | None:
    vals = [v for v in values if v is not None]
    if not vals:
        return None
    return {"min": min(vals), "median": statistics.median(vals), "max": max(vals)}


def reproduced(claim: dict) -> bool:
    """A claim held in a run: its test passed and its negative control (if any) did not."""
    return claim.get("holds") is True and claim.get("control_holds") is not True


def aggregate(slug: str, profile: str, runs: dict[int, dict], key: str) -> dict:
    """One chapter's sweep: ``runs`` maps each seed to ``{"ok", "seconds", "record"}``.

    Per claim (matched across seeds by its key, else its statement): the seeds it ran in, those
    it held in, those it failed in, and the minimum, median and maximum of our value and of its
    margin (for a list value, the element nearest to failing).
    """
    claims: dict[str, dict] = {}
    values: dict[str, list] = {}
    margins: dict[str, list] = {}
    for seed in sorted(runs):
        record = runs[seed].get("record") or {}
        for c in record.get("claims", []):
            cid = c.get("key") or c["statement"]
            agg = claims.setdefault(
                cid,
                {
                    "id": cid,
                    "statement": c["statement"],
                    "tier": c.get("tier"),
                    "kind": c.get("kind", "claim"),
                    "asserted": False,
                    "ran": 0,
                    "held": 0,
                    "failed_seeds": [],
                },
            )
            agg["asserted"] = agg["asserted"] or bool(c.get("asserted"))
            if c.get("holds") is None:
                continue
            agg["ran"] += 1
            if reproduced(c):
                agg["held"] += 1
            else:
                agg["failed_seeds"].append(seed)
            values.setdefault(cid, []).append(_worst_value(c.get("ours"), c.get("comparison", "")))
            margins.setdefault(cid, []).append(margin(c.get("ours"), c.get("comparison", "")))
    for cid, agg in claims.items():
        agg["value"] = _spread(values.get(cid, []))
        agg["margin"] = _spread(margins.get(cid, []))
    devices = sorted({(r.get("record") or {}).get("device", "") for r in runs.values()} - {""})
    return {
        "slug": slug,
        "profile": profile,
        "seeds": sorted(runs),
        "chapter_ok": {str(s): bool(runs[s].get("ok")) for s in sorted(runs)},
        "seconds": {str(s): runs[s].get("seconds") for s in sorted(runs)},
        "device": ", ".join(devices) or "n/a",
        "key": key,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "claims": list(claims.values()),
    }


def seed_path(root: Path, chapter: Chapter, profile: str, seed: int) -> Path:
    return root / "_build" / "sweeps" / profile / chapter.slug / f"seed-{seed}.json"


def aggregate_path(root: Path, slug: str, profile: str) -> Path:
    return root / "results" / "sweeps" / profile / f"{slug}.json"


def sweep(
    seeds: list[int],
    slugs: list[str] | None = None,
    profile: str | None = None,
    jobs: int = 1,
    root: Path | None = None,
    *,
    force: bool = False,
    scheduler=None,
    worker_root: str | None = None,
) -> list[dict]:
    """Run every chapter at every seed (those not already run with the same inputs), then write the aggregates."""
    root = root or project_root()
    profile = resolve_profile(profile)
    todo = select(slugs, root)
    tasks: list[Task] = []
    for ch in todo:
        for seed in seeds:
            path = seed_path(root, ch, profile, seed)
            if not force and path.exists():
                saved = json.loads(path.read_text(encoding="utf-8"))
                if saved.get("key") == cache.inputs_key(root, ch, profile, seed):
                    continue
            tasks.append(Task(ch.slug, profile, seed, worker_root if scheduler is not None else str(root)))
    print(
        f"sweep: {len(todo)} chapter(s) x seeds {','.join(map(str, seeds))}, profile {profile}: "
        f"{len(tasks)} run(s) to do, {len(todo) * len(seeds) - len(tasks)} unchanged",
        flush=True,
    )
    by_slug = {c.slug: c for c in todo}
    for result in run_tasks(tasks, jobs, scheduler, gpu=profile == "full"):
        ch = by_slug[result.task.slug]
        path = seed_path(root, ch, profile, result.task.seed)
        path.parent.mkdir(parents=True, exist_ok=True)
        entry = {
            "key": cache.inputs_key(root, ch, profile, result.task.seed),
            "ok": result.ok,
            "seconds": round(result.seconds, 2),
            "host": result.host,
            "error": result.error[-4000:],
            "record": result.record,
        }
        path.write_text(json.dumps(entry, indent=1, default=str) + "\n", encoding="utf-8")
        if result.notebook is not None:
            path.with_suffix(".ipynb").write_bytes(result.notebook)
        if result.task.seed == BOOK_SEED:  # the book's own run: a `make book` after the sweep reuses it
            _store(root, ch, result)
        print(
            f"  {'ok    ' if result.ok else 'FAILED'} {ch.slug:<28} seed {result.task.seed:<3} {result.seconds:6.1f} s",
            flush=True,
        )
    aggregates = []
    for ch in todo:
        runs = {}
        for seed in seeds:
            path = seed_path(root, ch, profile, seed)
            if path.exists():
                runs[seed] = json.loads(path.read_text(encoding="utf-8"))
        agg = aggregate(ch.slug, profile, runs, cache.inputs_key(root, ch, profile))
        out = aggregate_path(root, ch.slug, profile)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(agg, indent=1, default=str) + "\n", encoding="utf-8")
        failing = [c["id"] for c in agg["claims"] if c["asserted"] and c["tier"] == "robust" and c["failed_seeds"]]
        ok = sum(agg["chapter_ok"].values())
        print(
            f"  {ch.slug:<28} ran in {ok} of {len(runs)} seed(s)"
            + (f"; robust claims failing in some seed: {', '.join(failing)}" if failing else ""),
            flush=True,
        )
        aggregates.append(agg)
    return aggregates


def load_sweeps(root: Path) -> dict[tuple[str, str], dict]:
    """The committed aggregates, by (slug, profile), each with ``stale`` set when its chapter's
    inputs (chapter, library, pins) have changed since the sweep ran."""
    out: dict[tuple[str, str], dict] = {}
    folder = root / "results" / "sweeps"
    if not folder.exists():
        return out
    try:
        known = {c.slug: c for c in select(None, root)}
    except FileNotFoundError:
        known = {}
    for path in sorted(folder.glob("*/*.json")):
        try:
            agg = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise ValueError(f"unreadable sweep aggregate {path}: {exc}") from exc
        ch = known.get(agg.get("slug", ""))
        agg["stale"] = ch is None or agg.get("key") != cache.inputs_key(root, ch, agg.get("profile", ""))
        out[(agg.get("slug", ""), agg.get("profile", ""))] = agg
    return out
