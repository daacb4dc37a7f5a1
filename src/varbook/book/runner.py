"""Execute chapters: the table of contents, papermill execution into ``_build/executed``, outcomes."""

from __future__ import annotations

import concurrent.futures as cf
import os
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

from ..runtime import resolve_profile

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


def toc_files(node) -> list[str]:
    files: list[str] = []
    if isinstance(node, dict):
        if "file" in node:
            files.append(node["file"])
        if "root" in node:
            files.append(node["root"])
        for key in ("parts", "chapters", "sections"):
            for child in node.get(key, []) or []:
                files += toc_files(child)
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
    for name in toc_files(toc):
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
        merged: list = []
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
