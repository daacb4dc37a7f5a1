"""The reproduction check that ends every chapter: a table of the paper's claims against our numbers.

A :class:`Report` collects claims. Each claim has a statement, the paper's value and its source
(or ``"unverified"``), our value(s), a comparison with a threshold, a tier and whether it holds.
:meth:`Report.finish` renders the table, writes the chapter's JSON record and raises
:class:`ClaimFailed` when a claim that must hold in this profile does not.

Tiers:

* ``robust``: asserted in both profiles;
* ``full``: asserted in the full profile, reported in smoke;
* ``exploratory``: reported only.
"""

from __future__ import annotations

import datetime as _dt
import html
import json
import math
import operator
import os
import platform
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from . import runtime

TIERS = ("robust", "full", "exploratory")
_OPS = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}


class ClaimFailed(AssertionError):
    """A claim that must hold in this profile did not."""


@dataclass
class Claim:
    """One row of the claims table."""

    statement: str
    tier: str
    ours: float | list[float] | None
    comparison: str
    holds: bool | None  # None: not run in this profile
    paper: str = ""
    source: str = "unverified"
    note: str = ""

    def ours_text(self) -> str:
        return _fmt(self.ours)


def _fmt(value) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (list, tuple)):
        return ", ".join(_fmt(v) for v in value)
    if isinstance(value, float):
        if value == 0 or 1e-3 <= abs(value) < 1e4:
            return f"{value:.4g}"
        return f"{value:.3e}"
    return str(value)


def _as_floats(value) -> list[float]:
    if isinstance(value, torch.Tensor):
        return [float(v) for v in value.detach().flatten().cpu()]
    if isinstance(value, (list, tuple)):
        return [float(v) for v in value]
    return [float(value)]


def verdict_html(holds: bool | None, asserted: bool) -> str:
    """The coloured verdict of a claim, shared by the chapters' tables and the dashboard."""
    if holds is None:
        return '<span class="varbook-skipped" style="color:#57606a">&ndash; not run here</span>'
    if holds:
        return '<span class="varbook-holds" style="color:#1a7f37">&#10003; holds</span>'
    if asserted:
        return '<b class="varbook-fails" style="color:#cf222e">&#10007; FAILS</b>'
    return '<span class="varbook-fails" style="color:#9a6700">&#10007; not reproduced</span>'


def results_root() -> Path:
    """Where chapter records go: ``VARBOOK_RESULTS_DIR``, else ``_build/results`` of the enclosing project."""
    env = os.environ.get("VARBOOK_RESULTS_DIR")
    if env:
        return Path(env)
    here = Path.cwd().resolve()
    for folder in (here, *here.parents):
        if (folder / "pyproject.toml").exists() and (folder / "src" / "varbook").is_dir():
            return folder / "_build" / "results"
    return here / "_build" / "results"


@dataclass
class Report:
    """Claims of one chapter run. Create it at the start of the chapter so its wall time is measured."""

    slug: str
    profile: str
    seed: int
    device: torch.device = field(default_factory=runtime.device)
    claims: list[Claim] = field(default_factory=list)
    extra: dict = field(default_factory=dict)
    started: float = field(default_factory=time.perf_counter)

    def __post_init__(self) -> None:
        self.profile = runtime.resolve_profile(self.profile)
        self.device = torch.device(self.device)

    def check(
        self,
        statement: str,
        ours,
        op: str,
        threshold: float,
        *,
        tier: str,
        paper: str = "",
        source: str = "unverified",
        note: str = "",
    ) -> Claim:
        """Add a claim that holds when every value in ``ours`` satisfies ``ours <op> threshold``.

        NaN never satisfies a comparison, so a diverged run cannot pass a claim.
        """
        if op not in _OPS:
            raise ValueError(f"unknown comparison {op!r}: use one of {', '.join(_OPS)}")
        values = _as_floats(ours)
        if not values:
            raise ValueError("a claim needs at least one value of ours")
        holds = all(math.isfinite(v) and _OPS[op](v, threshold) for v in values)
        shown = values[0] if len(values) == 1 else values
        return self._add(Claim(statement, tier, shown, f"{op} {_fmt(float(threshold))}", holds, paper, source, note))

    def check_true(
        self,
        statement: str,
        holds: bool,
        *,
        tier: str,
        ours=None,
        comparison: str = "",
        paper: str = "",
        source: str = "unverified",
        note: str = "",
    ) -> Claim:
        """Add a claim whose test is not a single threshold (an ordering, an identity, ...)."""
        if isinstance(ours, torch.Tensor):
            ours = _as_floats(ours)
        return self._add(Claim(statement, tier, ours, comparison, bool(holds), paper, source, note))

    def skip(self, statement: str, reason: str, *, tier: str, paper: str = "", source: str = "unverified") -> Claim:
        """Record a claim whose experiment does not run in this profile (never for a claim asserted here)."""
        claim = Claim(statement, tier, None, "not run in this profile", None, paper, source, reason)
        if self.asserted(claim):
            raise ValueError(f"a claim asserted in the {self.profile} profile cannot be skipped: {statement}")
        return self._add(claim)

    def _add(self, claim: Claim) -> Claim:
        if claim.tier not in TIERS:
            raise ValueError(f"unknown tier {claim.tier!r}: use one of {', '.join(TIERS)}")
        self.claims.append(claim)
        return claim

    def asserted(self, claim: Claim) -> bool:
        """Whether ``claim`` must hold in this report's profile."""
        return claim.tier == "robust" or (claim.tier == "full" and self.profile == "full")

    def failures(self) -> list[Claim]:
        return [c for c in self.claims if self.asserted(c) and c.holds is not True]

    def to_html(self) -> str:
        head = ["claim", "tier", "paper", "source", "ours", "test", "holds"]
        rows = []
        for c in self.claims:
            verdict = verdict_html(c.holds, self.asserted(c))
            cells = [c.statement, c.tier, c.paper or "&mdash;", c.source, c.ours_text(), c.comparison or "&mdash;"]
            cells = [html.escape(x) if x != "&mdash;" else x for x in cells]
            note = f"<br><small>{html.escape(c.note)}</small>" if c.note else ""
            cells[0] += note
            rows.append("<tr>" + "".join(f"<td>{x}</td>" for x in cells) + f"<td>{verdict}</td></tr>")
        return (
            f'<table class="varbook-claims" data-profile="{self.profile}">'
            f"<caption>Reproduction check: {html.escape(self.slug)}, {self.profile} profile, seed {self.seed}"
            "</caption><thead><tr>"
            + "".join(f"<th>{h}</th>" for h in head)
            + "</tr></thead><tbody>"
            + "".join(rows)
            + "</tbody></table>"
        )

    def to_text(self) -> str:
        lines = []
        for c in self.claims:
            mark = "-- " if c.holds is None else "ok " if c.holds else ("FAIL" if self.asserted(c) else "no ")
            lines.append(f"[{mark}] ({c.tier}) {c.statement}: ours {c.ours_text()} {c.comparison}")
        return "\n".join(lines)

    def record(self, wall_seconds: float | None = None) -> dict:
        """The JSON record of this run."""
        wall = time.perf_counter() - self.started if wall_seconds is None else wall_seconds
        return {
            "slug": self.slug,
            "profile": self.profile,
            "seed": self.seed,
            "date": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
            "wall_seconds": round(wall, 2),
            "device": runtime.device_name(self.device),
            "device_type": self.device.type,
            "peak_memory_bytes": runtime.peak_memory_bytes(self.device),
            "torch": torch.__version__,
            "python": platform.python_version(),
            "claims": [asdict(c) | {"asserted": self.asserted(c)} for c in self.claims],
            "extra": self.extra,
        }

    def save(self, root: Path | str | None = None) -> Path:
        root = Path(root) if root is not None else results_root()
        path = root / self.profile / f"{self.slug}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.record(), indent=2, default=str) + "\n")
        return path

    def finish(self, root: Path | str | None = None) -> None:
        """Show the table, save the record, then raise :class:`ClaimFailed` if an asserted claim failed."""
        try:
            from IPython import get_ipython
            from IPython.display import HTML, display

            if get_ipython() is not None:  # a notebook or IPython; a plain script gets the text table only
                display(HTML(self.to_html()))
        except ImportError:  # pragma: no cover - plain script without IPython
            pass
        print(self.to_text())
        path = self.save(root)
        print(f"record: {path.name} ({self.profile}), wall {self.record()['wall_seconds']} s")
        failed = self.failures()
        if failed:
            names = "; ".join(c.statement for c in failed)
            raise ClaimFailed(
                f"{len(failed)} claim(s) of {self.slug} did not hold in the {self.profile} profile: {names}"
            )


def summarise(records: Sequence[dict]) -> dict:
    """Counts of claims that hold, per tier, over several records."""
    out: dict[str, list[int]] = {t: [0, 0] for t in TIERS}
    for rec in records:
        for c in rec.get("claims", []):
            if c["holds"] is None:
                continue
            out[c["tier"]][0] += c["holds"] is True
            out[c["tier"]][1] += 1
    return {t: {"holds": h, "total": n} for t, (h, n) in out.items()}
