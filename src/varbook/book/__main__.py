"""Command line of the book: ``python -m varbook.book``.

* ``list``: the chapters of the table of contents;
* ``run [--profile P] [--seed S] [--only SLUG ...] [--jobs J] [--force] [--scheduler ADDR]``:
  execute chapters into ``_build/executed/<profile>/`` (tracked files are never modified),
  skipping those whose inputs are unchanged since their last successful run (``--force``
  re-runs them), here or on a Dask cluster. A failing chapter is reported with its traceback;
  the others still run and keep their results; the exit status is non-zero if any failed;
* ``run --profile full --missing --budget SECONDS``: run the chapters that lack a committed
  full-profile record (or whose record is stale) within the budget, and commit-ready copy
  each record to ``results/full/``;
* ``sweep --seeds 0-4 [--only SLUG ...] [--profile P] [--jobs J] [--scheduler ADDR]``: every
  chapter at every seed; per-claim hold rates in ``results/sweeps/<profile>/<slug>.json``;
* ``site [--profile P] [--edition instructor|student]``: stage the executed notebooks with the
  book's pages into ``_build/site`` and build HTML into ``_build/html`` (the student edition,
  without solutions, into ``_build/html-student``) with Sphinx warnings as errors;
* ``book``: ``run`` then ``site``; prints the path of ``index.html``;
* ``new PART SLUG``: scaffold a chapter from the template.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

from .fullruns import run_missing
from .runner import UnknownChapter, chapters, execute
from .scaffold import ScaffoldError, new_chapter
from .site import build_site
from .sweeps import parse_seeds, sweep


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m varbook.book", description=(__doc__ or "").split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("list", help="list the chapters")
    p.add_argument("--paths", action="store_true", help="print only the chapters' source paths")
    for name in ("run", "book", "sweep"):
        helps = {"run": "execute chapters", "book": "execute chapters and build the site", "sweep": "seed sweeps"}
        p = sub.add_parser(name, help=helps[name])
        p.add_argument("--profile", default=None)
        if name == "sweep":
            p.add_argument("--seeds", default="0-4", help="a range and/or a list: 0-4, 0,2,5 (default 0-4)")
        else:
            p.add_argument("--seed", type=int, default=0)
        p.add_argument("--only", nargs="*", default=None, metavar="SLUG")
        p.add_argument("--jobs", type=int, default=int(os.environ.get("VARBOOK_JOBS", "1")))
        p.add_argument("--force", action="store_true", help="run again chapters whose inputs are unchanged")
        p.add_argument("--scheduler", default=None, metavar="ADDR", help="a Dask scheduler, e.g. tcp://host:8786")
        p.add_argument("--worker-root", default=None, help="the project's path on the Dask workers")
        if name == "book":
            p.add_argument("--edition", default="instructor", help="instructor (solutions folded) or student (none)")
        if name == "run":
            p.add_argument("--missing", action="store_true", help="full profile: chapters without a fresh record")
            p.add_argument("--budget", type=float, default=None, metavar="SECONDS", help="time budget of --missing")
    p = sub.add_parser("site", help="build the site from executed chapters")
    p.add_argument("--profile", default=None)
    p.add_argument("--edition", default="instructor", help="instructor (solutions folded) or student (none)")
    p = sub.add_parser("new", help="scaffold a chapter from book/_template")
    p.add_argument("part", help="the part's folder under book/ (a new one is created)")
    p.add_argument("slug", help="the chapter's name: lower case, digits and underscores")
    args = parser.parse_args(argv)
    try:
        if args.command == "list":
            for c in chapters():
                print(c.source if args.paths else f"{c.slug:<28} {c.source}")
            return 0
        if args.command == "new":
            made = new_chapter(args.part, args.slug)
            for path in made.files():
                print(f"wrote {path}")
            print(f"added book/{args.part}/{args.slug} to _toc.yml; run it: make chapter SLUG={args.slug}")
            return 0
        if args.command == "sweep":
            aggs = sweep(
                parse_seeds(args.seeds),
                args.only,
                args.profile,
                args.jobs,
                force=args.force,
                scheduler=args.scheduler,
                worker_root=args.worker_root,
            )
            return 1 if any(not all(a["chapter_ok"].values()) for a in aggs) else 0
        if args.command == "run" and args.missing:
            if args.profile != "full" or args.budget is None:
                raise ValueError("--missing runs full-profile records: give --profile full and --budget SECONDS")
            outcomes = run_missing(args.budget, args.only, args.seed)
            return 1 if any(not o.ok for o in outcomes) else 0
        if args.command in ("run", "book"):
            start = time.perf_counter()
            outcomes = execute(
                args.only,
                args.profile,
                args.seed,
                args.jobs,
                force=args.force,
                scheduler=args.scheduler,
                worker_root=args.worker_root,
            )
            failed = [o for o in outcomes if not o.ok]
            if args.command == "book":
                index = build_site(args.profile, edition=args.edition)
                print(f"site built in {time.perf_counter() - start:.0f} s: {index}")
            return 1 if failed else 0
        index = build_site(args.profile, edition=args.edition)
        print(f"site: {index}")
        return 0
    except (UnknownChapter, ScaffoldError, ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except subprocess.CalledProcessError as exc:
        print(f"error: the site build failed ({exc.returncode}); see the Sphinx messages above", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
