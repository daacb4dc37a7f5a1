"""Execute chapters: the table of contents, papermill execution into ``_build/executed``, outcomes."""

from __future__ import annotations

import concurrent.futures as cf
import os
import time
import traceback
from collections.abc import Iterator
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
    cached: bool = False
    seed: int = 0


@dataclass(frozen=True)
class Task:
    """One chapter at one profile and seed. ``root`` is the project on the machine that runs it:
    ``None`` means the ``VARBOOK_ROOT`` environment variable there, else the project around its cwd."""

    slug: str
    profile: str
    seed: int
    root: str | None = None


@dataclass
class Result:
    """What running a :class:`Task` gives back: everything travels by value, so that a cluster
    worker needs no filesystem shared with the client."""

    task: Task
    ok: bool
    seconds: float
    notebook: bytes | None = None  # the executed notebook (also when it failed part-way)
    record: dict | None = None  # the claims record the chapter saved, if it got that far
    error: str = ""
    host: str = ""


def _task_root(task: Task) -> Path:
    if task.root:
        return Path(task.root)
    env = os.environ.get("VARBOOK_ROOT")
    return Path(env) if env else project_root()


def run_task(task: Task) -> Result:
    """Execute one chapter with papermill in a scratch folder and return its notebook and record.

    Never raises for a failing chapter: the failure is in :attr:`Result.error`. This is the
    function every engine runs (in this process, in a process pool, or on a Dask worker).
    """
    import json
    import socket
    import tempfile

    import jupytext
    import papermill

    host = socket.gethostname()
    start = time.perf_counter()
    try:
        root = _task_root(task)
        chapter = select([task.slug], root)[0]
    except Exception as exc:  # an unknown chapter or a worker outside the project
        return Result(task, False, 0.0, error=_describe(exc), host=host)
    with tempfile.TemporaryDirectory(prefix=f"varbook-{task.slug}-") as tmp:
        scratch = Path(tmp)
        inp, out, results = scratch / "input.ipynb", scratch / "executed.ipynb", scratch / "results"
        nb = jupytext.read(root / chapter.source)
        nb.metadata.setdefault("kernelspec", {"name": "python3", "display_name": "Python 3", "language": "python"})
        jupytext.write(nb, inp, fmt="ipynb")
        saved = dict(os.environ)  # the kernel inherits this environment; restore it afterwards
        os.environ.update(
            VARBOOK_BATCH="1",
            VARBOOK_RESULTS_DIR=str(results),
            PYTHONPATH=os.pathsep.join(filter(None, [str(root / "src"), os.environ.get("PYTHONPATH", "")])),
        )
        os.environ.setdefault("OMP_NUM_THREADS", "1")
        error = ""
        try:
            papermill.execute_notebook(
                str(inp),
                str(out),
                parameters={"profile": task.profile, "seed": task.seed},
                cwd=str((root / chapter.source).parent),
                kernel_name="python3",
                progress_bar=False,
                request_save_on_cell_execute=False,
            )
        except Exception as exc:  # papermill raises PapermillExecutionError, with the cell's traceback
            error = _describe(exc)
        finally:
            os.environ.clear()
            os.environ.update(saved)
        seconds = time.perf_counter() - start
        notebook = None
        if out.exists():
            _postprocess_notebook(out)
            notebook = out.read_bytes()
        rec_path = results / task.profile / f"{task.slug}.json"
        record = json.loads(rec_path.read_text(encoding="utf-8")) if rec_path.exists() else None
    return Result(task, not error, seconds, notebook, record, error, host)


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


# ----------------------------------------------------------------------------------------
# Engines: where tasks run. Each yields results as they complete.
# ----------------------------------------------------------------------------------------


def run_tasks(tasks: list[Task], jobs: int = 1, scheduler=None, gpu: bool = False) -> Iterator[Result]:
    """Run ``tasks`` here (one after another, or ``jobs`` at a time in processes) or, with
    ``scheduler`` (an address such as ``tcp://host:8786``, or a ``distributed`` cluster or
    client), on a Dask cluster, where each task asks for one ``GPU`` resource when ``gpu``."""
    if not tasks:
        return
    if scheduler is not None:
        from .cluster import run_on_cluster

        yield from run_on_cluster(tasks, scheduler, gpu=gpu)
    elif jobs <= 1:
        for task in tasks:
            yield run_task(task)
    else:
        with cf.ProcessPoolExecutor(max_workers=jobs) as pool:
            futures = [pool.submit(run_task, t) for t in tasks]
            for fut in cf.as_completed(futures):
                yield fut.result()


# ----------------------------------------------------------------------------------------
# Commands: run (cached), sweep, full runs within a budget
# ----------------------------------------------------------------------------------------


def _store(root: Path, chapter: Chapter, result: Result) -> Outcome:
    """Write a result where the site and the dashboard look for it; stamp it for the cache when it succeeded."""
    import json

    from . import cache

    profile = result.task.profile
    out = cache.executed_path(root, chapter, profile)
    out.parent.mkdir(parents=True, exist_ok=True)
    if result.notebook is not None:
        out.write_bytes(result.notebook)
    rec = cache.record_path(root, chapter, profile)
    if result.record is not None:
        rec.parent.mkdir(parents=True, exist_ok=True)
        rec.write_text(json.dumps(result.record, indent=2, default=str) + "\n", encoding="utf-8")
    else:
        rec.unlink(missing_ok=True)  # no record from this run: never show an older one in its place
    if result.ok:
        cache.write_stamp(root, chapter, profile, result.task.seed, result.seconds)
    else:
        cache.drop_stamp(root, chapter, profile)
    return Outcome(chapter.slug, result.ok, result.seconds, out, result.error, seed=result.task.seed)


def execute(
    slugs: list[str] | None = None,
    profile: str | None = None,
    seed: int = 0,
    jobs: int = 1,
    root: Path | None = None,
    *,
    force: bool = False,
    scheduler=None,
    worker_root: str | None = None,
) -> list[Outcome]:
    """Execute chapters with papermill; print a line per chapter and a summary; never raise on a failing chapter.

    A chapter whose inputs (:func:`varbook.book.cache.inputs_key`) are unchanged since its last
    successful run is not executed again unless ``force``. ``scheduler`` sends the chapters to a
    Dask cluster (see :func:`run_tasks`); ``worker_root`` is the project's path on the workers.
    """
    from . import cache

    root = root or project_root()
    profile = resolve_profile(profile)
    todo = select(slugs, root)
    outcomes: list[Outcome] = []
    run: list[Chapter] = []
    for ch in todo:
        if not force and cache.is_fresh(root, ch, profile, seed):
            outcomes.append(Outcome(ch.slug, True, 0.0, cache.executed_path(root, ch, profile), cached=True, seed=seed))
        else:
            run.append(ch)
    where = f"on {scheduler}" if isinstance(scheduler, str) else "on a Dask cluster" if scheduler else f"{jobs} job(s)"
    print(
        f"executing {len(run)} chapter(s), profile {profile}, seed {seed}, {where}"
        + (f"; {len(outcomes)} unchanged since their last run (cached; --force re-runs them)" if outcomes else ""),
        flush=True,
    )
    for o in outcomes:
        _report(o)
    by_slug = {c.slug: c for c in run}
    tasks = [Task(c.slug, profile, seed, worker_root if scheduler is not None else str(root)) for c in run]
    for result in run_tasks(tasks, jobs, scheduler, gpu=profile == "full"):
        outcomes.append(_report(_store(root, by_slug[result.task.slug], result)))
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
    if o.cached:
        print(f"  cached {o.slug:<28}  (unchanged)", flush=True)
    elif o.ok:
        print(f"  ok     {o.slug:<28} {o.seconds:6.1f} s", flush=True)
    else:
        print(f"  FAILED {o.slug:<28} {o.seconds:6.1f} s  (executed notebook: {o.output})", flush=True)
        print(o.error, flush=True)
    return o
