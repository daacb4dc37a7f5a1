"""Chapters on a Dask cluster (``distributed``): each chapter x seed is one task.

The cluster is an existing one, started by hand::

    dask scheduler                                   # on one machine: tcp://HOST:8786
    dask worker tcp://HOST:8786 --nthreads 1 --resources GPU=1    # on each GPU node

or by dask-jobqueue on a Slurm cluster (see the README). Every worker runs the same project and
environment (a clone of the repository at the same commit, ``make setup``, and
``VARBOOK_ROOT`` pointing at the clone when the worker starts elsewhere). No filesystem is
shared: a task returns its executed notebook and its claims record by value
(:class:`varbook.book.runner.Result`), and the client writes them. Full-profile tasks ask for one
``GPU`` resource each, so a worker runs one at a time. A worker that dies mid-task is noticed by
the scheduler, which runs the task again elsewhere (up to its ``allowed-failures``); the other
tasks go on. A chapter that fails is reported as a failed chapter, as in a local run.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

from .runner import Result, Task, _describe, run_task

_batch = itertools.count()


def run_on_cluster(tasks: list[Task], scheduler: Any, gpu: bool = False) -> Iterator[Result]:
    """Submit ``tasks`` to the Dask cluster ``scheduler`` (an address, or a cluster or client
    object) and yield their results as they complete; a task the cluster loses is a failed result."""
    try:
        from distributed import Client, as_completed
    except ImportError as exc:  # pragma: no cover - the cluster extra is part of the pinned toolchain
        raise ImportError("a Dask scheduler needs the `distributed` package: pip install distributed") from exc

    own = not isinstance(scheduler, Client)
    client = Client(scheduler) if own else scheduler
    try:
        batch = next(_batch)
        futures = {}
        for i, task in enumerate(tasks):
            fut = client.submit(
                run_task,
                task,
                key=f"varbook-{task.slug}-{task.profile}-seed{task.seed}-{batch}-{i}",
                pure=False,
                resources={"GPU": 1} if gpu else None,
            )
            futures[fut] = task
        for fut in as_completed(list(futures)):
            task = futures[fut]
            try:
                yield fut.result()
            except Exception as exc:  # KilledWorker after too many lost workers, or a cancelled task
                yield Result(task, False, 0.0, error=f"lost on the cluster: {_describe(exc)}")
    finally:
        if own:
            client.close()
