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
        ("committed GPU run", root / "results" / "full"),
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


def dashboard(records: list[dict]) -> str:
    """HTML tables (embedded in MyST) of claims, chapter runs and the environment."""
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
    parts.append("\n## Claims\n")
    rows = []
    for r in records:
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
                    mark,
                ]
            )
    parts.append(
        _html_table(
            ["chapter", "profile", "tier", "claim", "paper", "source", "ours", "test", "control", "holds"],
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
