"""The book runner: execute chapters with papermill, stage and build the site, write the dashboard.

Command line (``python -m varbook.book``):

* ``list``: the chapters of the table of contents;
* ``run [--profile P] [--seed S] [--only SLUG ...] [--jobs J]``: execute chapters into
  ``_build/executed/<profile>/`` (tracked files are never modified). A failing chapter is
  reported with its traceback; the others still run and keep their results; the exit status is
  non-zero if any failed;
* ``site [--profile P]``: stage the executed notebooks with the book's pages into
  ``_build/site`` and build HTML into ``_build/html`` with Sphinx warnings as errors;
* ``book``: ``run`` then ``site``; prints the path of ``index.html``.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import html
import importlib.metadata as md
import json
import os
import platform
import shutil
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

from .claims import verdict_html
from .runtime import resolve_profile

ROOT_MARKERS = ("_toc.yml", "_config.yml")


class UnknownChapter(KeyError):
    """A chapter slug that is not in the table of contents."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0])


@dataclass(frozen=True)
class Chapter:
    slug: str
    part: str
    source: Path  # book/<part>/<slug>.md, relative to the project root

    @property
    def docname(self) -> str:
        return self.source.with_suffix("").as_posix()


def project_root(start: Path | None = None) -> Path:
    """The folder holding ``_toc.yml`` and ``_config.yml`` (searched upwards from ``start`` or the cwd)."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if all((folder / m).exists() for m in ROOT_MARKERS):
            return folder
    raise FileNotFoundError("not inside the book project (no _toc.yml and _config.yml found)")


def _toc_files(node) -> list[str]:
    files: list[str] = []
    if isinstance(node, dict):
        if "file" in node:
            files.append(node["file"])
        if "root" in node:
            files.append(node["root"])
        for key in ("parts", "chapters", "sections"):
            for child in node.get(key, []) or []:
                files += _toc_files(child)
    return files


def _is_notebook_source(path: Path) -> bool:
    head = path.read_text(encoding="utf-8")[:2000]
    return head.startswith("---") and "kernelspec:" in head.split("\n---", 1)[0]


def chapters(root: Path | None = None) -> list[Chapter]:
    """Chapters in table-of-contents order: pages ``book/<part>/<slug>.md`` that are MyST notebooks."""
    import yaml

    root = root or project_root()
    toc = yaml.safe_load((root / "_toc.yml").read_text())
    out = []
    for name in _toc_files(toc):
        path = Path(name)
        src = root / path.with_suffix(".md")
        if len(path.parts) == 3 and path.parts[0] == "book" and src.exists() and _is_notebook_source(src):
            out.append(Chapter(path.stem, path.parts[1], src.relative_to(root)))
    return out


def select(slugs: list[str] | None, root: Path | None = None) -> list[Chapter]:
    """The chapters named by ``slugs`` (all when empty); an unknown slug raises :class:`UnknownChapter`."""
    known = chapters(root)
    if not slugs:
        return known
    by_slug = {c.slug: c for c in known}
    unknown = [s for s in slugs if s not in by_slug]
    if unknown:
        raise UnknownChapter(
            f"unknown chapter {', '.join(map(repr, unknown))}: the table of contents has "
            f"{', '.join(sorted(by_slug)) or 'no chapters'}"
        )
    return [by_slug[s] for s in slugs]


# ----------------------------------------------------------------------------------------
# Execution
# ----------------------------------------------------------------------------------------


@dataclass
class Outcome:
    slug: str
    ok: bool
    seconds: float
    output: Path
    error: str = ""


def _execute_one(root: Path, chapter: Chapter, profile: str, seed: int) -> Outcome:
    import jupytext
    import papermill

    build = root / "_build"
    out = build / "executed" / profile / chapter.source.with_suffix(".ipynb")
    out.parent.mkdir(parents=True, exist_ok=True)
    inp = build / "inputs" / chapter.source.with_suffix(".ipynb")
    inp.parent.mkdir(parents=True, exist_ok=True)
    nb = jupytext.read(root / chapter.source)
    nb.metadata.setdefault("kernelspec", {"name": "python3", "display_name": "Python 3", "language": "python"})
    jupytext.write(nb, inp, fmt="ipynb")
    saved = dict(os.environ)  # the kernel inherits this environment; restore it afterwards
    os.environ.update(
        VARBOOK_BATCH="1",
        VARBOOK_RESULTS_DIR=str(build / "results"),
        PYTHONPATH=os.pathsep.join(filter(None, [str(root / "src"), os.environ.get("PYTHONPATH", "")])),
    )
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    start = time.perf_counter()
    try:
        papermill.execute_notebook(
            str(inp),
            str(out),
            parameters={"profile": profile, "seed": seed},
            cwd=str((root / chapter.source).parent),
            kernel_name="python3",
            progress_bar=False,
            request_save_on_cell_execute=False,
        )
    except Exception as exc:  # papermill raises PapermillExecutionError, with the cell's traceback
        if out.exists():
            _postprocess_notebook(out)
        return Outcome(chapter.slug, False, time.perf_counter() - start, out, _describe(exc))
    finally:
        os.environ.clear()
        os.environ.update(saved)
    _postprocess_notebook(out)
    return Outcome(chapter.slug, True, time.perf_counter() - start, out)


def _describe(exc: Exception) -> str:
    tb = getattr(exc, "traceback", None)
    if tb:
        import re

        text = "\n".join(tb)
        return re.sub(r"\x1b\[[0-9;]*m", "", text)
    return "".join(traceback.format_exception(exc))


def collapse_carriage_returns(text: str) -> str:
    r"""What a terminal shows for ``text``: on each line, only what follows the last ``\r`` stays."""
    lines = []
    for line in text.split("\n"):
        parts = [p for p in line.split("\r") if p]
        lines.append(parts[-1] if parts else "")
    return "\n".join(lines)


def _postprocess_notebook(path: Path) -> None:
    import nbformat

    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        tags = cell.get("metadata", {}).get("tags", [])
        if "injected-parameters" in tags and "remove-cell" not in tags:
            cell["metadata"]["tags"] = [*tags, "remove-cell"]  # papermill's copy of the parameters
        merged = []
        for output in cell.get("outputs", []):
            if output.get("output_type") == "stream":
                if merged and merged[-1].get("output_type") == "stream" and merged[-1]["name"] == output["name"]:
                    merged[-1]["text"] += output["text"]
                    continue
            merged.append(output)
        for output in merged:
            if output.get("output_type") == "stream":
                output["text"] = collapse_carriage_returns(output["text"])
        if "outputs" in cell:
            cell["outputs"] = merged
    nbformat.write(nb, path)


def execute(
    slugs: list[str] | None = None, profile: str | None = None, seed: int = 0, jobs: int = 1, root: Path | None = None
) -> list[Outcome]:
    """Execute chapters with papermill; print a line per chapter and a summary; never raise on a failing chapter."""
    root = root or project_root()
    profile = resolve_profile(profile)
    todo = select(slugs, root)
    print(f"executing {len(todo)} chapter(s), profile {profile}, seed {seed}, {jobs} job(s)", flush=True)
    outcomes: list[Outcome] = []
    if jobs <= 1:
        for ch in todo:
            outcomes.append(_report(_execute_one(root, ch, profile, seed)))
    else:
        with cf.ProcessPoolExecutor(max_workers=jobs) as pool:
            futures = [pool.submit(_execute_one, root, ch, profile, seed) for ch in todo]
            for fut in cf.as_completed(futures):
                outcomes.append(_report(fut.result()))
    failed = [o for o in outcomes if not o.ok]
    print(
        f"\n{len(outcomes) - len(failed)} of {len(outcomes)} chapter(s) ran; "
        f"total {sum(o.seconds for o in outcomes):.1f} s",
        flush=True,
    )
    if failed:
        print("FAILED chapters: " + ", ".join(o.slug for o in failed), flush=True)
    return outcomes


def _report(o: Outcome) -> Outcome:
    if o.ok:
        print(f"  ok     {o.slug:<28} {o.seconds:6.1f} s", flush=True)
    else:
        print(f"  FAILED {o.slug:<28} {o.seconds:6.1f} s  (executed notebook: {o.output})", flush=True)
        print(o.error, flush=True)
    return o


# ----------------------------------------------------------------------------------------
# Dashboard
# ----------------------------------------------------------------------------------------


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
    n_hold = sum(c["holds"] is True for r in records for c in r["claims"])
    n_all = sum(c["holds"] is not None for r in records for c in r["claims"])
    n_fail = sum(c["holds"] is not True and bool(c.get("asserted")) for r in records for c in r["claims"])
    parts = [
        f"**{n_hold} of {n_all} claims hold** across {len(records)} chapter run(s); {n_fail} asserted claim(s) fail.\n"
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
                f"{sum(c['holds'] is True for c in claims)} / {sum(c['holds'] is not None for c in claims)}",
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
                "claims holding",
            ],
            rows,
            "varbook-runs",
        )
    )
    parts.append("\n## Claims\n")
    rows = []
    for r in records:
        for c in r["claims"]:
            mark = verdict_html(c["holds"], bool(c.get("asserted")))
            rows.append(
                [
                    r["slug"],
                    r["profile"],
                    c["tier"],
                    c["statement"],
                    c.get("paper") or "—",
                    c.get("source", ""),
                    _fmt_value(c.get("ours")),
                    c.get("comparison", ""),
                    mark,
                ]
            )
    parts.append(
        _html_table(
            ["chapter", "profile", "tier", "claim", "paper", "source", "ours", "test", "holds"],
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


# ----------------------------------------------------------------------------------------
# Site
# ----------------------------------------------------------------------------------------

DASHBOARD_MARKER = "<!-- varbook:dashboard -->"


def stage(profile: str, root: Path | None = None) -> Path:
    """Assemble ``_build/site``: the book's pages, the executed chapters in place of their sources, the dashboard."""
    root = root or project_root()
    site = root / "_build" / "site"
    if site.exists():
        shutil.rmtree(site)
    site.mkdir(parents=True)
    for name in ("_config.yml", "_toc.yml", "references.bib"):
        shutil.copy2(root / name, site / name)
    chapter_sources = {c.source for c in chapters(root)}
    for path in sorted((root / "book").rglob("*")):
        rel = path.relative_to(root)
        if path.is_dir() or rel.with_suffix(".md") in chapter_sources or ".ipynb_checkpoints" in rel.parts:
            continue
        (site / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, site / rel)
    missing = []
    for src in sorted(chapter_sources):
        executed = root / "_build" / "executed" / profile / src.with_suffix(".ipynb")
        if executed.exists():
            shutil.copy2(executed, site / src.with_suffix(".ipynb"))
        else:
            missing.append(src.stem)
    if missing:
        raise FileNotFoundError(
            f"chapter(s) not executed in the {profile} profile: {', '.join(missing)}; run them first"
        )
    (site / "src").symlink_to(root / "src", target_is_directory=True)
    repro = site / "book" / "reproducibility.md"
    text = repro.read_text(encoding="utf-8")
    if DASHBOARD_MARKER not in text:
        raise ValueError(f"book/reproducibility.md lacks the marker {DASHBOARD_MARKER}")
    repro.write_text(text.replace(DASHBOARD_MARKER, dashboard(load_records(root))), encoding="utf-8")
    return site


def build_site(profile: str | None = None, root: Path | None = None) -> Path:
    """Stage and build the HTML site into ``_build/html`` with warnings as errors; return ``index.html``."""
    root = root or project_root()
    profile = resolve_profile(profile)
    site = stage(profile, root)
    jb = shutil.which("jupyter-book", path=str(Path(sys.executable).parent)) or "jupyter-book"
    subprocess.run([jb, "config", "sphinx", str(site)], check=True, stdout=subprocess.DEVNULL)
    with open(site / "conf.py", "a", encoding="utf-8") as conf:
        # Thebe (live code through a remote kernel) needs the network, and sphinx-thebe 0.3 declares
        # its script twice under sphinx-book-theme 1.3, a JavaScript error on every page.
        conf.write('\nextensions = [e for e in extensions if e != "sphinx_thebe"]\n')
    html_dir = root / "_build" / "html"
    if html_dir.exists():
        shutil.rmtree(html_dir)
    cmd = [
        sys.executable,
        "-m",
        "sphinx",
        "-b",
        "html",
        "-W",
        "--keep-going",
        "-a",
        "-E",
        "-q",
        "-d",
        str(root / "_build" / "doctrees"),
        str(site),
        str(html_dir),
    ]
    subprocess.run(cmd, check=True)
    index = html_dir / "index.html"
    if not index.exists():
        raise FileNotFoundError(f"the site build wrote no {index}")
    return index


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m varbook.book", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="list the chapters")
    for name in ("run", "book"):
        p = sub.add_parser(name, help="execute chapters" + (" and build the site" if name == "book" else ""))
        p.add_argument("--profile", default=None)
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--only", nargs="*", default=None, metavar="SLUG")
        p.add_argument("--jobs", type=int, default=int(os.environ.get("VARBOOK_JOBS", "1")))
    p = sub.add_parser("site", help="build the site from executed chapters")
    p.add_argument("--profile", default=None)
    args = parser.parse_args(argv)
    try:
        if args.command == "list":
            for c in chapters():
                print(f"{c.slug:<28} {c.source}")
            return 0
        if args.command in ("run", "book"):
            start = time.perf_counter()
            outcomes = execute(args.only, args.profile, args.seed, args.jobs)
            failed = [o for o in outcomes if not o.ok]
            if args.command == "book":
                index = build_site(args.profile)
                print(f"site built in {time.perf_counter() - start:.0f} s: {index}")
            return 1 if failed else 0
        index = build_site(args.profile)
        print(f"site: {index}")
        return 0
    except (UnknownChapter, ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except subprocess.CalledProcessError as exc:
        print(f"error: the site build failed ({exc.returncode}); see the Sphinx messages above", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())


__all__ = [
    "Chapter",
    "Outcome",
    "UnknownChapter",
    "chapters",
    "select",
    "execute",
    "stage",
    "build_site",
    "dashboard",
    "load_records",
    "collapse_carriage_returns",
    "project_root",
    "main",
]
