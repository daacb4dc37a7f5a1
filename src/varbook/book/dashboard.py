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


def tier_counts(claims: list[dict]) -> dict[str, dict[str, int]]:
    """Per tier (robust, full, exploratory) and for sanity checks apart: how many claims held
    (test passed, control failed), were not reproduced, or were not run.

    >>> tier_counts([{"tier": "robust", "holds": True}, {"tier": "robust", "holds": False},
    ...              {"tier": "full", "holds": None}, {"tier": "robust", "kind": "sanity", "holds": True}])["robust"]
    {'held': 1, 'not reproduced': 1, 'not run': 0}
    """
    out = {g: {"held": 0, "not reproduced": 0, "not run": 0} for g in ("robust", "full", "exploratory", "sanity")}
    for c in claims:
        group = "sanity" if c.get("kind") == "sanity" else c.get("tier", "exploratory")
        cell = out.setdefault(group, {"held": 0, "not reproduced": 0, "not run": 0})
        if c.get("holds") is None:
            cell["not run"] += 1
        elif c["holds"] and c.get("control_holds") is not True:
            cell["held"] += 1
        else:
            cell["not reproduced"] += 1
    return out


def _count_cell(cell: dict[str, int]) -> str:
    if not any(cell.values()):
        return "—"
    return ", ".join(f"{k} {v}" for k, v in cell.items() if v) or "—"


def build_commit(root: Path | None = None) -> str:
    """The commit the build comes from (short hash, with ``+changes`` when the tree differs), or ``unknown``."""
    import subprocess

    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=root, capture_output=True, text=True).stdout
        return head + (" (with uncommitted changes)" if dirty.strip() else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def dashboard(
    records: list[dict],
    sweeps: dict[tuple[str, str], dict] | None = None,
    links: dict[str, str] | None = None,
    commit: str | None = None,
) -> str:
    """The reproducibility page's generated part (HTML embedded in MyST).

    First a matrix, one row per chapter run: its claims per tier as "held, not reproduced, not
    run", sanity checks apart, with device and wall time; then which chapters have a committed
    full-profile record; then, folded per chapter under its own anchor, every claim with its
    hold rate over seeds (from ``sweeps``, as :func:`varbook.book.sweeps.load_sweeps` gives them);
    then the runs, the sweeps and the environment. ``links`` maps a chapter to the URL of its
    reproduction check, relative to the page; ``commit`` names the build's commit.
    """
    sweeps = sweeps or {}
    links = links or {}
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
        f"{totals['not run']} not run, across {len(records)} chapter run(s); {n_fail} asserted row(s) fail. "
        f"Built from commit `{commit or 'unknown'}`.\n"
    ]
    parts.append("## At a glance\n")
    rows = []
    for r in records:
        counts = tier_counts(r["claims"])
        link = links.get(r["slug"])
        name = html.escape(r["slug"].replace("_", " "))
        title = f'<a href="{html.escape(link)}">{name}</a>' if link else name
        rows.append(
            [
                title,
                html.escape(r["profile"]) + ("" if r.get("origin") == "this build" else " (committed)"),
                *(html.escape(_count_cell(counts[g])) for g in ("robust", "full", "exploratory", "sanity")),
                html.escape(str(r.get("device", "n/a"))),
                f"{r.get('wall_seconds', 0):.0f} s",
            ]
        )
    parts.append(
        _html_table(
            ["chapter", "profile", "robust", "full", "exploratory", "sanity checks", "device", "wall time"],
            rows,
            "varbook-matrix",
            raw=True,
        )
    )
    full = [r for r in records if r.get("origin") != "this build" and r.get("profile") == "full"]
    built = sorted({r["slug"] for r in records})
    if full:
        listed = "; ".join(
            f"{r['slug']} on {r.get('device', 'an unknown device')} ({str(r.get('date', ''))[:10]})" for r in full
        )
        missing = [s for s in built if s not in {r["slug"] for r in full}]
        parts.append(
            f"\n**Full-profile records.** {len(full)} chapter(s) have a committed full-profile record: {listed}."
            + (f" No record yet for: {', '.join(missing)}." if missing else "")
            + "\n"
        )
    else:
        parts.append(
            "\n**Full-profile records.** No chapter has a committed full-profile record yet: every full-tier "
            "claim on this page comes from the smoke profile (reported, not asserted) or was not run.\n"
        )
    parts.append("\n## Claims, chapter by chapter\n")
    for r in records:
        sweep = sweeps.get((r["slug"], r["profile"]))
        rows = []
        for c in r["claims"]:
            mark = verdict_html(
                c["holds"],
                bool(c.get("asserted")),
                kind=c.get("kind", "claim"),
                control_holds=c.get("control_holds"),
                comparison=c.get("comparison", ""),
            )
            rows.append(
                [
                    mark,
                    "sanity check" if c.get("kind") == "sanity" else c["tier"],
                    c["statement"],
                    c.get("paper") or "—",
                    c.get("source", ""),
                    c.get("threshold_from") or "—",
                    _fmt_value(c.get("ours")),
                    c.get("comparison", ""),
                    "—" if c.get("control") is None else _fmt_value(c.get("control")),
                    seeds_cell(sweep, c),
                ]
            )
        anchor = f"claims-{r['slug']}-{r['profile']}" + ("" if r.get("origin") == "this build" else "-committed")
        told = tally(r["claims"])
        summary = (
            f"{html.escape(r['slug'])} ({html.escape(r['profile'])}"
            + ("" if r.get("origin") == "this build" else ", committed record")
            + f"): {told['reproduced']} reproduced, {told['not reproduced']} not reproduced, "
            f"{told['sanity']} sanity, {told['not run']} not run"
        )
        parts.append(f'<details class="varbook-chapter-claims" id="{anchor}"><summary>{summary}</summary>\n')
        parts.append(
            _html_table(
                [
                    "holds",
                    "tier",
                    "claim",
                    "paper says",
                    "where",
                    "threshold from",
                    "ours",
                    "test",
                    "control",
                    "over seeds",
                ],
                rows,
                "varbook-dashboard",
                raw_first=True,
            )
        )
        parts.append("</details>\n")
    parts.append("\n## Chapter runs\n")
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


def _html_table(head: list[str], rows: list[list[str]], cls: str, raw: bool = False, raw_first: bool = False) -> str:
    """An HTML table in a box that scrolls sideways on its own; ``raw``: every cell is HTML already,
    ``raw_first``: the first cell is."""
    body = []
    for row in rows:
        cells = list(row) if raw else [_cell(x) for x in row]
        if raw_first and not raw:
            cells[0] = row[0]
        body.append("<tr>" + "".join(f"<td>{x}</td>" for x in cells) + "</tr>")
    return (
        f'<div class="varbook-table-wrap"><table class="{cls}"><thead><tr>'
        + "".join(f"<th>{h}</th>" for h in head)
        + "</tr></thead><tbody>"
        + "".join(body)
        + "</tbody></table></div>\n"
    )
