"""The book around the library: claims tables, chapter execution, the site and its dashboard.

* :mod:`varbook.book.claims`: the :class:`Report` every chapter ends with, and its claims;
* :mod:`varbook.book.runner`: the chapters of the table of contents, executed with papermill
  here, in processes, or on a Dask cluster (:mod:`varbook.book.cluster`), and reused while their
  inputs are unchanged (:mod:`varbook.book.cache`);
* :mod:`varbook.book.sweeps`: seed sweeps and their per-claim hold rates;
* :mod:`varbook.book.fullruns`: full-profile records within a time budget;
* :mod:`varbook.book.dashboard` and :mod:`varbook.book.site`: the reproducibility page and the
  HTML build;
* :mod:`varbook.book.figures`: the figures' shared matplotlib style and panel layout;
* :mod:`varbook.book.style`: the measures of a chapter's shape (code share, largest cell);
* :mod:`varbook.book.records`: a chapter's committed full-profile record, for its notes;
* :mod:`varbook.book.scaffold`: a new chapter from the template;
* ``python -m varbook.book``: the command line (:mod:`varbook.book.__main__`).

A chapter starts with :func:`start`, which validates its parameters, seeds everything, prints
what it runs on, and returns what the chapter needs.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from .. import runtime
from .claims import Claim, ClaimFailed, Report, load_specs, summarise, verdict_html
from .dashboard import dashboard, load_records
from .figures import panels, use_style
from .fullruns import run_missing
from .records import full_record
from .runner import (
    Chapter,
    Outcome,
    UnknownChapter,
    chapters,
    collapse_carriage_returns,
    execute,
    project_root,
    select,
    toc_files,
)
from .site import build_site, stage
from .sweeps import load_sweeps, sweep


class Start(NamedTuple):
    """What :func:`start` returns to a chapter."""

    profile: str
    device: torch.device
    generator: torch.Generator
    report: Report


def start(slug: str, profile: str | None = None, seed: int = 0, device: str | None = None) -> Start:
    """Begin a chapter run: validate ``profile`` and ``seed``, seed everything, print the device,
    and set the book's figure style (:func:`~varbook.book.figures.use_style`).

    Returns the profile, the device, a CPU generator seeded with ``seed`` and the chapter's
    :class:`Report` (whose wall time starts now).
    """
    profile, seed, dev = runtime.setup(profile, seed, device)
    use_style()
    generator = torch.Generator().manual_seed(seed)
    return Start(profile, dev, generator, Report(slug, profile, seed, dev))


__all__ = [
    "Chapter",
    "Claim",
    "ClaimFailed",
    "Outcome",
    "Report",
    "Start",
    "UnknownChapter",
    "build_site",
    "chapters",
    "collapse_carriage_returns",
    "dashboard",
    "execute",
    "full_record",
    "load_records",
    "load_specs",
    "load_sweeps",
    "panels",
    "project_root",
    "run_missing",
    "select",
    "stage",
    "start",
    "summarise",
    "sweep",
    "toc_files",
    "use_style",
    "verdict_html",
]
