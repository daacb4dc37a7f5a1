"""The reproducibility dashboard: every chapter record of a build and the committed full-profile records."""

from __future__ import annotations

import html
import importlib.metadata as md
import json
import platform
from pathlib import Path

from .claims import tally, verdict_html


def load_records(root: Path) -> list[dict]:
    """Every chapter record: this build's ``_build/results/<profile>/*.json`` and the committed ``results/full/*.json``."""
    records = []
    for origin, folder in (
        ("this build", root / "_build" / "results"),
        ("committed full record", root / "results" / "full"),
    ):
        for path in sorted(folder.rglob("*.json")) if folder.exists() else []:
            try:
                rec = json.loads(path.read_text())
            except json.JSONDecodeError as exc:
                raise ValueError(f"unreadable results record {path}: {exc}") from exc
            rec["origin"] = origin
            records.append(rec)
    return records


def _cell(value) -> str:
    return html.escape("n/a" if value is None else str(value))


def _fmt_value(value) -> str:
    if isinstance(value, list):
        return ", ".join(_fmt_value(v) for v in value)
    if isinstance(value, float):
        return f"{value:.4g}"
    return "n/a" if value is None else str(value)


def seeds_cell(agg: dict | None, claim: dict) -> str:
    """What the claims table shows of a claim's seed sweep: "held in k of n seeds", a flag for an
    asserted robust claim that failed in some seed, and "stale" when the sweep predates the inputs.

    >>> agg = {"stale": False, "claims": [{"id": "a", "tier": "robust", "asserted": True, "ran": 5,
    ...        "held": 4, "failed_seeds": [3]}]}
    >>> seeds_cell(agg, {"key": "a"})
    'held in 4 of 5 seeds; FAILED in seed 3'
    """
    if agg is None:
        return "no sweep"
    cid = claim.get("key") or claim.get("statement")
    found = next((c for c in agg.get("claims", []) if c.get("id") == cid), None)
    if found is None:
        return "not in the sweep"
    if not found.get("ran"):
        text = "not run in the sweep"
    else:
        text = f"held in {found['held']} of {found['ran']} seeds"
        if found.get("failed_seeds") and found.get("asserted") and found.get("tier") == "robust":
            seeds = ", ".join(map(str, found["failed_seeds"]))
            text += f"; FAILED in seed{'s' if len(found['failed_seeds']) > 1 else ''} {seeds}"
    return text + (" (stale: the chapter or library changed since)" if agg.get("stale") else "")


def dashboard(records: list[dict], sweeps: dict[tuple[str, str], dict] | None = None) -> str:
    """HTML tables (embedded in MyST) of claims (with their hold rates over seeds, from ``sweeps``,
    as :func:`varbook.book.sweeps.load_sweeps` gives them), chapter runs, sweeps and the environment."""
    sweeps = sweeps or {}
    if not records:
        return "*No chapter has been executed in this build yet.*\n"
    totals = tally([c for r in records for c in r["claims"]])
    n_fail = sum(
        bool(c.get("asserted")) and (c["holds"] is not True or c.get("control_holds") is True)
        for r in records
        for c in r["claims"]
    )
    parts = [
        f"**{totals['reproduced']} claims reproduced** ({totals['controlled']} of them with a negative control "
        f"that fails as it should), {totals['sanity']} sanity checks, {totals['not reproduced']} not reproduced, "
        f"{totals['not run']} not run, across {len(records)} chapter run(s); {n_fail} asserted row(s) fail.\n"
    ]
    parts.append("## Chapter runs\n")
    rows = []
    for r in records:
        claims = r["claims"]
        rows.append(
            [
                r["slug"],
                r["profile"],
                r["origin"],
                r.get("device", "n/a"),
                f"{r.get('wall_seconds', 0):.1f} s",
                f"{r.get('peak_memory_bytes', 0) / 2**20:.0f} MiB",
                r.get("torch", "n/a"),
                str(r.get("seed", "")),
                r.get("date", "n/a")[:10],
                *(str(n) for n in tally(claims).values()),
            ]
        )
    parts.append(
        _html_table(
            [
                "chapter",
                "profile",
                "record",
                "device",
                "wall time",
                "peak memory",
                "torch",
                "seed",
                "date",
                "reproduced",
                "with failing control",
                "sanity checks",
                "not reproduced",
                "not run here",
            ],
            rows,
            "varbook-runs",
        )
    )
    if sweeps:
        parts.append("\n## Seed sweeps\n")
        rows = []
        for (slug, profile), agg in sorted(sweeps.items()):
            ok = sum(bool(v) for v in agg.get("chapter_ok", {}).values())
            failing = [
                c["id"]
                for c in agg.get("claims", [])
                if c.get("asserted") and c.get("tier") == "robust" and c["failed_seeds"]
            ]
            rows.append(
                [
                    slug,
                    profile,
                    ", ".join(map(str, agg.get("seeds", []))),
                    f"{ok} of {len(agg.get('chapter_ok', {}))}",
                    ", ".join(failing) or "none",
                    agg.get("device", "n/a"),
                    str(agg.get("date", "n/a"))[:10],
                    "stale: the chapter or library changed since" if agg.get("stale") else "current",
                ]
            )
        parts.append(
            _html_table(
                [
                    "chapter",
                    "profile",
                    "seeds",
                    "chapter ran",
                    "robust claims failing in a seed",
                    "device",
                    "date",
                    "inputs",
                ],
                rows,
                "varbook-sweeps",
            )
        )
    parts.append("\n## Claims\n")
    rows = []
    for r in records:
        sweep = sweeps.get((r["slug"], r["profile"]))
        for c in r["claims"]:
            mark = verdict_html(
                c["holds"], bool(c.get("asserted")), kind=c.get("kind", "claim"), control_holds=c.get("control_holds")
            )
            rows.append(
                [
                    r["slug"],
                    r["profile"],
                    "sanity check" if c.get("kind") == "sanity" else c["tier"],
                    c["statement"],
                    c.get("paper") or "—",
                    c.get("source", ""),
                    _fmt_value(c.get("ours")),
                    c.get("comparison", ""),
                    "—" if c.get("control") is None else _fmt_value(c.get("control")),
                    seeds_cell(sweep, c),
                    mark,
                ]
            )
    parts.append(
        _html_table(
            [
                "chapter",
                "profile",
                "tier",
                "claim",
                "paper",
                "source",
                "ours",
                "test",
                "control",
                "over seeds",
                "holds",
            ],
            rows,
            "varbook-dashboard",
            raw_last=True,
        )
    )
    parts.append("\n## Environment of this build\n")
    pkgs = [
        "torch",
        "numpy",
        "scikit-learn",
        "matplotlib",
        "jupyter-book",
        "sphinx",
        "myst-nb",
        "papermill",
        "jupytext",
    ]
    env_rows = [["python", platform.python_version()], ["platform", platform.platform()]]
    for p in pkgs:
        try:
            env_rows.append([p, md.version(p)])
        except md.PackageNotFoundError:
            env_rows.append([p, "not installed"])
    parts.append(_html_table(["package", "version"], env_rows, "varbook-env"))
    return "\n".join(parts) + "\n"


def _html_table(head: list[str], rows: list[list[str]], cls: str, raw_last: bool = False) -> str:
    body = []
    for row in rows:
        cells = [_cell(x) for x in row]
        if raw_last:
            cells[-1] = row[-1]
        body.append("<tr>" + "".join(f"<td>{x}</td>" for x in cells) + "</tr>")
    return (
        f'<table class="{cls}"><thead><tr>'
        + "".join(f"<th>{h}</th>" for h in head)
        + "</tr></thead><tbody>"
        + "".join(body)
        + "</tbody></table>\n"
    )
