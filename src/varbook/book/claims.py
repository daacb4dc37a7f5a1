"""The reproduction check of every chapter: the paper's claims against our numbers.

A :class:`Report` collects claims. Each claim has a statement, the paper's value and its source
(or ``"unverified"``), our value(s), a comparison with a threshold, a tier and whether it holds.
A claim is checked right after the experiment that produces its number; :meth:`Report.finish`
shows the table of all of them at the end, writes the chapter's JSON record and raises
:class:`ClaimFailed` when a claim that must hold in this profile does not.

The text of a chapter's claims (statement, paper value, source, tier, comparison, threshold)
lives beside the chapter in ``book/<part>/<slug>.claims.yml``, fixed before the experiment
runs; the chapter checks a claim by its key (:meth:`Report.check`), so that the notebook shows
the measurement and the verdict, not the bookkeeping.

Tiers:

* ``robust``: asserted in both profiles;
* ``full``: asserted in the full profile, reported in smoke;
* ``exploratory``: reported only.

Kinds:

* ``claim``: a result of the paper that our numbers can contradict. It may carry a *negative
  control*: the same measurement of a deliberately wrong variant, which must fail the same
  test; a control that passes means the test cannot discriminate, and an asserted claim then
  fails;
* ``sanity``: a row true by construction of our code (an identity of our own bookkeeping); it is
  asserted like a robust claim but never counted as a reproduced claim.
"""

from __future__ import annotations

import datetime as _dt
import html
import json
import math
import operator
import os
import platform
import re
import textwrap
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from .. import runtime
from ..runtime import check_choice

TIERS = ("robust", "full", "exploratory")
"""Claim tiers: asserted in both profiles, asserted in the full profile only, reported only."""
KINDS = ("claim", "sanity")
"""Row kinds: a claim our numbers can contradict, or a sanity check true by construction."""
COMPARISONS = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}
"""The comparison operators a threshold test can use."""
SPEC_FIELDS = (
    "statement", "tier", "kind", "op", "threshold", "comparison", "paper", "source", "threshold_from", "note"
)  # fmt: skip
"""The fields of one claim in a chapter's ``<slug>.claims.yml``."""
THRESHOLD_ORIGINS = ("paper", "proposed", "calibrated", "none")
"""Where a claim's threshold comes from, the first word of its ``threshold_from`` field: the paper's own
number, proposed before the run (by the brief, by us, or from theory such as a quantile), calibrated on a
pilot run (the pilot's numbers follow the colon), or ``none`` (a sanity check or a test without a number)."""


NOT_BUILT = "not built"
"""The comparison of a claim whose experiment this chapter does not build (:meth:`Report.skip`)."""

LINE_WIDTH = 88
"""Width of the printed verdict lines (the width of a code block on the book's pages)."""


class ClaimFailed(AssertionError):
    """A claim that must hold in this profile did not (or its negative control passed)."""


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
    key: str = ""
    kind: str = "claim"
    control: float | list[float] | None = None  # the wrong variant's value(s)
    control_holds: bool | None = None  # None: no control; True: the control passed (cannot discriminate)
    threshold_from: str = ""  # "paper", "proposed: ...", "calibrated: ..." (THRESHOLD_ORIGINS)

    def _ipython_display_(self) -> None:
        """Show nothing when a notebook cell ends with a check: :meth:`Report.check` printed its line."""

    def ours_text(self) -> str:
        return _fmt(self.ours)

    @property
    def discriminates(self) -> bool | None:
        """Whether the negative control failed the test as it should (``None`` without a control)."""
        return None if self.control_holds is None else not self.control_holds

    def verdict(self, asserted: bool) -> str:
        """One word for the row: holds, fails, not reproduced, cannot discriminate, sanity, not run, not built."""
        if self.holds is None:
            return "not built" if self.comparison == NOT_BUILT else "not run"
        if self.control_holds:
            return "cannot discriminate"
        if self.kind == "sanity":
            return "sanity" if self.holds else "fails"
        if self.holds:
            return "holds"
        return "fails" if asserted else "not reproduced"

    def line(self, asserted: bool) -> str:
        """The claim as one line of text, as :meth:`Report.check` prints it."""
        mark = {"holds": "ok", "sanity": "ok", "not run": "--", "not built": "--", "not reproduced": "no"}.get(
            self.verdict(asserted), "FAIL"
        )
        control = (
            ""
            if self.control is None
            else f"; control {_fmt(self.control)}: {'fails' if self.discriminates else 'PASSES'}"
        )
        label = self.tier if self.kind == "claim" else "sanity"
        return f"[{mark:>4}] ({label}) {self.statement}: ours {self.ours_text()} {self.comparison}{control}"


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


_VERDICT_HTML = {
    "not run": ("varbook-skipped", "#57606a", "&ndash; not run here"),
    "not built": ("varbook-skipped", "#57606a", "&#8709; not built"),
    "holds": ("varbook-holds", "#1a7f37", "&#10003; holds"),
    "sanity": ("varbook-sanity", "#57606a", "&#10003; sanity check"),
    "fails": ("varbook-fails", "#cf222e", "&#10007; FAILS"),
    "cannot discriminate": ("varbook-fails", "#cf222e", "&#10007; cannot discriminate"),
    "not reproduced": ("varbook-fails", "#9a6700", "&#10007; not reproduced"),
}


def verdict_html(
    holds: bool | None,
    asserted: bool,
    *,
    kind: str = "claim",
    control_holds: bool | None = None,
    comparison: str = "",
) -> str:
    """The coloured verdict of a claim, shared by the chapters' tables and the dashboard."""
    word = Claim("", "robust", None, comparison, holds, kind=kind, control_holds=control_holds).verdict(asserted)
    cls, color, text = _VERDICT_HTML[word]
    if word == "holds" and control_holds is False:
        text += " <small>(control fails)</small>"
    tag = "b" if color == "#cf222e" else "span"
    return f'<{tag} class="{cls}" style="color:{color}">{text}</{tag}>'


def fill(text: str, values: dict | None) -> str:
    """Fill the ``{name}`` and ``{name:spec}`` placeholders of ``text`` whose names are in ``values``.

    ``{{`` and ``}}`` stand for literal braces, as in :meth:`str.format`; other braces (LaTeX, sets)
    are left alone.

    >>> fill("rate {rate:.2f}, H in {{0.2, 0.3}}, set {a, b}, {missing}", {"rate": 0.1})
    'rate 0.10, H in {0.2, 0.3}, set {a, b}, {missing}'
    """
    values = values or {}

    def one(match: re.Match) -> str:
        if match.group(0) in ("{{", "}}"):
            return match.group(0)[0]
        name, spec = match.group(1), match.group(2) or ""
        return format(values[name], spec) if name in values else match.group(0)

    return re.sub(r"\{\{|\}\}|\{(\w+)(?::([^{}]*))?\}", one, text)


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


def specs_path(slug: str, start: Path | None = None) -> Path | None:
    """The claims file ``book/<part>/<slug>.claims.yml`` of the project enclosing ``start`` (or the cwd),
    else of the project the library is installed from (a reader notebook run outside the project)."""
    here = (start or Path.cwd()).resolve()
    projects = [folder for folder in (here, *here.parents) if (folder / "_toc.yml").exists()][:1]
    projects.append(Path(__file__).resolve().parents[3])  # <project>/src/varbook/book/claims.py
    for folder in projects:
        found = sorted((folder / "book").glob(f"*/{slug}.claims.yml"))
        if found:
            return found[0]
    return None


def load_specs(path: Path | str) -> dict[str, dict]:
    """Read a chapter's claims file: a mapping from each claim's key to its fields (:data:`SPEC_FIELDS`)."""
    import yaml

    path = Path(path)
    specs = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(specs, dict):
        raise ValueError(f"{path.name}: expected a mapping from claim keys to their fields")
    for key, spec in specs.items():
        if not isinstance(spec, dict) or "statement" not in spec or "tier" not in spec:
            raise ValueError(f"{path.name}: claim {key!r} needs at least a statement and a tier")
        unknown = sorted(set(spec) - set(SPEC_FIELDS))
        if unknown:
            raise ValueError(f"{path.name}: claim {key!r} has unknown field(s) {', '.join(unknown)}")
        check_choice("tier", spec["tier"], TIERS)
        check_choice("kind", spec.get("kind", "claim"), KINDS)
        if "op" in spec:
            check_choice("comparison", spec["op"], COMPARISONS)
        if "threshold_from" in spec:
            threshold_origin(spec["threshold_from"], f"{path.name}: claim {key!r}")
    return specs


def threshold_origin(text: str, where: str = "threshold_from") -> str:
    """The origin word of a ``threshold_from`` text (one of :data:`THRESHOLD_ORIGINS`).

    >>> threshold_origin("calibrated: 18.7 vs 18.1 dB on a pilot run")
    'calibrated'
    """
    word = str(text).split(":", 1)[0].strip()
    if word not in THRESHOLD_ORIGINS:
        raise ValueError(f"{where}: threshold_from must start with one of {', '.join(THRESHOLD_ORIGINS)}, got {text!r}")
    return word


@dataclass
class Report:
    """Claims of one chapter run. Create it at the start of the chapter so its wall time is measured.

    ``specs`` maps claim keys to their fields; by default they are read from the chapter's
    ``<slug>.claims.yml`` when the project has one.
    """

    slug: str
    profile: str
    seed: int
    device: torch.device = field(default_factory=runtime.device)
    claims: list[Claim] = field(default_factory=list)
    extra: dict = field(default_factory=dict)
    started: float = field(default_factory=time.perf_counter)
    specs: dict[str, dict] | None = None
    verbose: bool = True

    def __post_init__(self) -> None:
        self.profile = runtime.resolve_profile(self.profile)
        self.device = torch.device(self.device)
        if self.specs is None:
            path = specs_path(self.slug)
            self.specs = load_specs(path) if path is not None else {}

    def _spec(self, name: str, fmt: dict | None, **given) -> dict:
        """The fields of claim ``name``: its spec (when ``name`` is a key), overridden by what is given."""
        assert self.specs is not None
        spec = dict(self.specs.get(name, {}))
        if spec:
            spec["key"] = name
        else:
            spec["statement"] = name
        spec.update({k: v for k, v in given.items() if v is not None})
        spec["statement"] = fill(str(spec["statement"]), fmt)
        if spec.get("note"):
            spec["note"] = fill(str(spec["note"]), fmt)
        if "tier" not in spec:
            raise ValueError(f"claim {name!r} has no tier: give one, or add it to {self.slug}.claims.yml")
        return spec

    def check(
        self,
        statement: str,
        ours,
        op: str | None = None,
        threshold: float | None = None,
        *,
        tier: str | None = None,
        paper: str | None = None,
        source: str | None = None,
        note: str | None = None,
        kind: str | None = None,
        control=None,
        fmt: dict | None = None,
    ) -> Claim:
        """Add a claim that holds when every value in ``ours`` satisfies ``ours <op> threshold``.

        ``statement`` is a key of the chapter's claims file (whose fields fill in what is not
        given here; ``fmt`` fills the statement's ``{placeholders}``) or the statement itself.
        ``control`` is the same measurement of a deliberately wrong variant: it must fail the
        test. NaN never satisfies a comparison, so a diverged run cannot pass a claim.
        """
        spec = self._spec(
            statement, fmt, op=op, threshold=threshold, tier=tier, paper=paper, source=source, note=note, kind=kind
        )
        if "op" not in spec or "threshold" not in spec:
            raise ValueError(f"claim {statement!r} needs a comparison and a threshold")
        op_ = check_choice("comparison", spec["op"], COMPARISONS)
        threshold_ = float(spec["threshold"])
        values = _as_floats(ours)
        if not values:
            raise ValueError("a claim needs at least one value of ours")

        def passes(vals: list[float]) -> bool:
            return all(math.isfinite(v) and COMPARISONS[op_](v, threshold_) for v in vals)

        control_values = None if control is None else _as_floats(control)
        claim = Claim(
            spec["statement"], spec["tier"], values[0] if len(values) == 1 else values,
            f"{op_} {_fmt(threshold_)}", passes(values), spec.get("paper", ""), spec.get("source", "unverified"),
            spec.get("note", ""), spec.get("key", ""), spec.get("kind", "claim"),
            None if control_values is None else (control_values[0] if len(control_values) == 1 else control_values),
            None if control_values is None else passes(control_values), spec.get("threshold_from", ""),
        )  # fmt: skip
        return self._add(claim)

    def check_true(
        self,
        statement: str,
        holds: bool,
        *,
        tier: str | None = None,
        ours=None,
        comparison: str | None = None,
        paper: str | None = None,
        source: str | None = None,
        note: str | None = None,
        kind: str | None = None,
        control=None,
        control_holds: bool | None = None,
        fmt: dict | None = None,
    ) -> Claim:
        """Add a claim whose test is not a single threshold (an ordering, an identity, ...).

        ``control_holds`` is the verdict of the same test on a deliberately wrong variant
        (whose values go in ``control``): it must be ``False``.
        """
        spec = self._spec(statement, fmt, tier=tier, comparison=comparison, paper=paper, source=source, note=note,
                          kind=kind)  # fmt: skip
        if isinstance(ours, torch.Tensor):
            ours = _as_floats(ours)
        if isinstance(control, torch.Tensor):
            control = _as_floats(control)
        claim = Claim(
            spec["statement"], spec["tier"], ours, spec.get("comparison", ""), bool(holds), spec.get("paper", ""),
            spec.get("source", "unverified"), spec.get("note", ""), spec.get("key", ""), spec.get("kind", "claim"),
            control, None if control_holds is None else bool(control_holds), spec.get("threshold_from", ""),
        )  # fmt: skip
        return self._add(claim)

    def skip(
        self,
        statement: str,
        reason: str,
        *,
        tier: str | None = None,
        paper: str | None = None,
        source: str | None = None,
        fmt: dict | None = None,
        missing_peer: bool = False,
        not_built: bool = False,
    ) -> Claim:
        """Record a claim whose experiment does not run in this profile (never for a claim asserted here).

        ``missing_peer=True``: the experiment needs a peer library the reader lacks; the claim shows as
        not run, even where it would be asserted, and the rest of the chapter runs. ``not_built=True``:
        the chapter does not build the brief's experiment at all (``reason`` says why); the row says so
        in every profile, whatever its tier, rather than "not run here".
        """
        if missing_peer and not_built:
            raise ValueError("a claim is either not built or missing a peer, not both")
        spec = self._spec(statement, fmt, tier=tier, paper=paper, source=source)
        why = (
            NOT_BUILT
            if not_built
            else ("not run: a peer library is missing" if missing_peer else "not run in this profile")
        )
        claim = Claim(
            spec["statement"], spec["tier"], None, why, None, spec.get("paper", ""),
            spec.get("source", "unverified"), reason, spec.get("key", ""), spec.get("kind", "claim"),
            threshold_from=spec.get("threshold_from", ""),
        )  # fmt: skip
        if self.asserted(claim) and not (missing_peer or not_built):
            raise ValueError(f"a claim asserted in the {self.profile} profile cannot be skipped: {claim.statement}")
        return self._add(claim)

    def _add(self, claim: Claim) -> Claim:
        check_choice("tier", claim.tier, TIERS)
        check_choice("kind", claim.kind, KINDS)
        self.claims.append(claim)
        if self.verbose:
            print(textwrap.fill(claim.line(self.asserted(claim)), LINE_WIDTH, subsequent_indent=" " * 7))
        return claim

    def asserted(self, claim: Claim) -> bool:
        """Whether ``claim`` must hold in this report's profile (sanity checks always must)."""
        return claim.tier == "robust" or claim.kind == "sanity" or (claim.tier == "full" and self.profile == "full")

    def failures(self) -> list[Claim]:
        """Asserted claims that did not hold, whose negative control passed, or that have no control."""
        return [c for c in self.claims if self.asserted(c) and self.problem(c)]

    def problem(self, claim: Claim) -> str:
        """Why an asserted ``claim`` fails this report ("" when it does not).

        A claim (not a sanity check) that holds must also carry a negative control that fails.
        """
        if claim.holds is None:
            return "" if claim.comparison.endswith("missing") or claim.comparison == NOT_BUILT else "not run"
        if not claim.holds:
            return "does not hold"
        if claim.control_holds:
            return "its control passes"
        if claim.kind == "claim" and claim.control_holds is None:
            return "no negative control"
        return ""

    LEGEND = (
        "Verdict first. <b>holds</b>: our number passes the test and the negative control (the same test on a "
        "deliberately wrong variant) fails it; <b>FAILS</b>: an asserted claim that did not hold (the chapter "
        "fails); <b>not reproduced</b>: reported, not asserted in this profile; <b>sanity check</b>: true by "
        "construction, not counted. <i>paper says</i> is the paper's result and <i>where</i> the place it says "
        "it; <i>threshold from</i>: the paper, proposed before the run, or calibrated on a pilot run."
    )

    def to_html(self) -> str:
        head = ["verdict", "claim", "tier", "paper says", "where", "threshold from", "ours", "test", "control"]
        rows: list[str] = []
        ordered = [c for c in self.claims if c.kind != "sanity"] + [c for c in self.claims if c.kind == "sanity"]
        for i, c in enumerate(ordered):
            if c.kind == "sanity" and (i == 0 or ordered[i - 1].kind != "sanity"):
                rows.append(
                    f'<tr class="varbook-sanity-head"><th colspan="{len(head)}">Sanity checks: true by '
                    "construction of our code, asserted but not counted as reproduced claims</th></tr>"
                )
            verdict = verdict_html(
                c.holds, self.asserted(c), kind=c.kind, control_holds=c.control_holds, comparison=c.comparison
            )
            tier = "sanity check" if c.kind == "sanity" else c.tier
            control = "&mdash;" if c.control is None else _fmt(c.control)
            cells = [
                c.statement,
                tier,
                c.paper or "&mdash;",
                c.source,
                c.threshold_from or "&mdash;",
                c.ours_text(),
                c.comparison or "&mdash;",
                control,
            ]
            cells = [html.escape(x) if x != "&mdash;" else x for x in cells]
            note = f"<br><small>{html.escape(c.note)}</small>" if c.note else ""
            cells[0] += note
            rows.append(f"<tr><td>{verdict}</td>" + "".join(f"<td>{x}</td>" for x in cells) + "</tr>")
        return (
            '<div class="varbook-claims-wrap">'
            f'<table class="varbook-claims" data-profile="{self.profile}">'
            f"<caption>Reproduction check: {html.escape(self.slug)}, {self.profile} profile, seed {self.seed}"
            f'<br><small class="varbook-legend">{self.LEGEND}</small>'
            "</caption><thead><tr>"
            + "".join(f"<th>{h}</th>" for h in head)
            + "</tr></thead><tbody>"
            + "".join(rows)
            + "</tbody></table></div>"
        )

    def to_text(self) -> str:
        """The table as text, one claim per (wrapped) line."""
        return "\n".join(
            textwrap.fill(c.line(self.asserted(c)), LINE_WIDTH, subsequent_indent=" " * 7) for c in self.claims
        )

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
            "claims": [
                asdict(c) | {"asserted": self.asserted(c), "verdict": c.verdict(self.asserted(c))} for c in self.claims
            ],
            "extra": self.extra,
        }

    def save(self, root: Path | str | None = None) -> Path:
        root = Path(root) if root is not None else results_root()
        path = root / self.profile / f"{self.slug}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.record(), indent=2, default=str) + "\n")
        return path

    def finish(self, root: Path | str | None = None) -> None:
        """Show the table, save the record, then raise :class:`ClaimFailed` if an asserted claim failed.

        A notebook shows the table as HTML; a plain script prints it as text.
        """
        shown = False
        try:
            from IPython import get_ipython
            from IPython.display import HTML, display

            if get_ipython() is not None:
                display(HTML(self.to_html()))
                shown = True
        except ImportError:  # pragma: no cover - plain script without IPython
            pass
        if not shown:
            print(self.to_text())
        path = self.save(root)
        print(f"record: {path.name} ({self.profile}), wall {self.record()['wall_seconds']} s")
        failed = self.failures()
        if failed:
            names = "; ".join(f"{c.statement} ({self.problem(c)})" for c in failed)
            raise ClaimFailed(
                f"{len(failed)} claim(s) of {self.slug} did not hold in the {self.profile} profile: {names}"
            )


def summarise(records: Sequence[dict]) -> dict:
    """Counts of claims that hold, per tier, over several records (sanity checks apart)."""
    out: dict[str, list[int]] = {t: [0, 0] for t in (*TIERS, "sanity")}
    for rec in records:
        for c in rec.get("claims", []):
            if c["holds"] is None:
                continue
            group = "sanity" if c.get("kind") == "sanity" else c["tier"]
            out[group][0] += c["holds"] is True and c.get("control_holds") is not True
            out[group][1] += 1
    return {t: {"holds": h, "total": n} for t, (h, n) in out.items()}


TALLY = ("reproduced", "controlled", "sanity", "not reproduced", "not run")
"""The columns of a chapter's tally: claims that hold (and, among them, those whose negative control
failed as it should), sanity checks, claims that do not hold (or cannot discriminate), claims not run."""


def tally(claims: Sequence[dict]) -> dict[str, int]:
    """Count a record's claims (dicts as in :meth:`Report.record`) by :data:`TALLY`.

    >>> tally([{"holds": True, "kind": "claim", "control_holds": False},
    ...        {"holds": True, "kind": "sanity"}, {"holds": None}, {"holds": True, "control_holds": True}])
    {'reproduced': 1, 'controlled': 1, 'sanity': 1, 'not reproduced': 1, 'not run': 1}
    """
    out = dict.fromkeys(TALLY, 0)
    for c in claims:
        if c.get("holds") is None:
            out["not run"] += 1
        elif c.get("kind", "claim") == "sanity":
            out["sanity"] += 1
        elif c["holds"] and c.get("control_holds") is not True:
            out["reproduced"] += 1
            out["controlled"] += c.get("control_holds") is False
        else:
            out["not reproduced"] += 1
    return out
