"""A chapter's committed full-profile record, as its notes show it.

A full-profile run (on a GPU, or a CPU within the hour) writes ``<slug>.json``; committed as
``results/full/<slug>.json`` it is the record of the chapter's full-tier claims. The notes of
a chapter print it with :func:`full_record`.
"""

from __future__ import annotations

import json
from pathlib import Path

from .runner import project_root


def _value(value) -> str:
    if isinstance(value, list):
        return ", ".join(_value(v) for v in value)
    if isinstance(value, float):
        return f"{value:.4g}"
    return "n/a" if value is None else str(value)


def full_record_path(slug: str, root: Path | None = None) -> Path:
    """Where the committed full-profile record of chapter ``slug`` lives."""
    return (root or project_root()) / "results" / "full" / f"{slug}.json"


def full_record(slug: str, root: Path | None = None) -> str:
    """The committed full-profile record of chapter ``slug`` as text: device, date, verdicts.

    Says so when there is none (or when not run inside the project).

    >>> import tempfile
    >>> print(full_record("nothing", Path(tempfile.mkdtemp())))
    No full-profile record of nothing yet (results/full/nothing.json).
    """
    try:
        path = full_record_path(slug, root)
    except FileNotFoundError:
        return f"No full-profile record of {slug} found: not run inside the book project."
    if not path.exists():
        return f"No full-profile record of {slug} yet (results/full/{slug}.json)."
    rec = json.loads(path.read_text(encoding="utf-8"))
    lines = [
        f"Full-profile record of {slug}: {rec.get('device', 'unknown device')}, "
        f"torch {rec.get('torch', '?')}, {str(rec.get('date', '?'))[:10]}, seed {rec.get('seed', '?')}, "
        f"wall {rec.get('wall_seconds', float('nan')):.0f} s"
    ]
    for c in rec.get("claims", []):
        verdict = c.get("verdict") or ("holds" if c.get("holds") else "not run" if c.get("holds") is None else "fails")
        lines.append(f"  [{verdict}] {c.get('statement', '')}: ours {_value(c.get('ours'))} {c.get('comparison', '')}")
    return "\n".join(lines)
