"""Cached rebuilds, seed sweeps, full-profile runs within a budget, and chapters on a Dask cluster,
each tested on a tiny project of fixture chapters."""

import json
import os
import time

import pytest

from varbook import book
from varbook.book import cache, fullruns, sweeps

from .test_runner import make_project

RECORD = """import json, os, pathlib
folder = pathlib.Path(os.environ["VARBOOK_RESULTS_DIR"]) / profile
folder.mkdir(parents=True, exist_ok=True)
claim = {{"key": "k", "statement": "s", "tier": "robust", "ours": seed * 1.0, "comparison": "< 3",
          "holds": seed < 3, "asserted": True, "kind": "claim"}}
(folder / "{slug}.json").write_text(json.dumps({{"slug": "{slug}", "profile": profile, "seed": seed,
    "device": "cpu", "wall_seconds": 1.0, "date": "2026-01-01", "claims": [claim]}}))"""


def ran(outcomes):
    return sorted(o.slug for o in outcomes if not o.cached)


def test_cache_hit_and_misses(tmp_path, capsys):
    uses_lib = "if False:  # seen by the inputs key, never run\n    from varbook import lib\n"
    root = make_project(tmp_path, {"one": uses_lib + "x = 1", "two": uses_lib + "x = 2", "bad": "1 / 0"})
    lib = root / "src" / "varbook" / "lib.py"
    lib.parent.mkdir(parents=True)
    (lib.parent / "__init__.py").write_text("")
    (lib.parent / "other.py").write_text("B = 1\n")
    lib.write_text("from . import helper\nA = 1\n")
    (lib.parent / "helper.py").write_text("C = 1\n")
    assert ran(book.execute(None, "smoke", root=root)) == ["bad", "one", "two"]
    # nothing changed: only the failed chapter runs again
    outcomes = book.execute(None, "smoke", root=root)
    assert ran(outcomes) == ["bad"] and "cached one" in capsys.readouterr().out
    assert all(o.ok for o in outcomes if o.cached)
    # editing one chapter re-executes that chapter only
    src = root / "book" / "gradients" / "one.md"
    src.write_text(src.read_text().replace("x = 1", "x = 10"))
    assert ran(book.execute(["one", "two"], "smoke", root=root)) == ["one"]
    # another seed, --force: run again
    assert ran(book.execute(["one"], "smoke", seed=1, root=root)) == ["one"]
    assert ran(book.execute(["one"], "smoke", seed=1, root=root, force=True)) == ["one"]
    # editing a library module that no chapter imports re-executes nothing
    assert ran(book.execute(["one", "two"], "smoke", seed=1, root=root)) == ["two"]
    (lib.parent / "other.py").write_text("B = 2\n")
    assert ran(book.execute(["one", "two"], "smoke", seed=1, root=root)) == []
    # editing a module the chapters import (here through another module) re-executes them
    (lib.parent / "helper.py").write_text("C = 2\n")
    assert ran(book.execute(["one", "two"], "smoke", seed=1, root=root)) == ["one", "two"]
    # a missing executed notebook is a miss, whatever the stamp says
    ch = book.select(["two"], root)[0]
    cache.executed_path(root, ch, "smoke").unlink()
    assert not cache.is_fresh(root, ch, "smoke", 1)


def test_the_key_sees_every_input(tmp_path):
    root = make_project(tmp_path, {"one": "x = 1"})
    ch = book.select(["one"], root)[0]
    keys = {cache.inputs_key(root, ch, "smoke", 0)}
    for change in (
        lambda: (root / "constraints.txt").write_text("torch==2\n"),
        lambda: (root / "book" / "gradients" / "one.claims.yml").write_text("a: {statement: s, tier: robust}\n"),
        lambda: (
            (root / "results" / "full").mkdir(parents=True) or (root / "results" / "full" / "one.json").write_text("{}")
        ),
    ):
        change()
        keys.add(cache.inputs_key(root, ch, "smoke", 0))
    keys |= {cache.inputs_key(root, ch, "full", 0), cache.inputs_key(root, ch, "smoke", 1)}
    keys.add(cache.inputs_key(root, ch, "smoke"))
    assert len(keys) == 7


def test_aggregate_counts_seeds_and_spreads():
    def run(seed, ours, holds, control_holds=None):
        claim = {"key": "k", "statement": "s", "tier": "robust", "ours": ours, "comparison": ">= 1",
                 "holds": holds, "asserted": True, "control_holds": control_holds}  # fmt: skip
        return {"ok": holds, "seconds": 1.0, "record": {"device": "cpu", "claims": [claim]}}

    runs = {0: run(0, [2.0, 5.0], True), 1: run(1, 4.0, True), 2: run(2, 0.5, False), 3: run(3, 3.0, True, True)}
    agg = sweeps.aggregate("x", "smoke", runs, "key")
    (c,) = agg["claims"]
    assert (c["ran"], c["held"], c["failed_seeds"]) == (4, 2, [2, 3])  # seed 3: its control passed too
    assert c["value"] == {"min": 0.5, "median": 2.5, "max": 4.0}  # seed 0 counts its worst element, 2.0
    assert c["margin"]["min"] == -0.5 and c["margin"]["max"] == 3.0
    assert agg["chapter_ok"] == {"0": True, "1": True, "2": False, "3": True}


def test_parse_seeds_rejects_bad_input():
    assert sweeps.parse_seeds("0-4") == [0, 1, 2, 3, 4]
    for bad in ("4-0", "a", ""):
        with pytest.raises(ValueError):
            sweeps.parse_seeds(bad)


def test_sweep_runs_each_seed_and_the_dashboard_shows_hold_rates(tmp_path):
    root = make_project(tmp_path, {"demo": RECORD.format(slug="demo")})
    (agg,) = sweeps.sweep([0, 1, 2, 3], ["demo"], "smoke", root=root)
    (c,) = agg["claims"]
    assert (c["ran"], c["held"], c["failed_seeds"]) == (4, 3, [3])
    assert agg["chapter_ok"] == {str(s): True for s in range(4)}
    committed = json.loads(sweeps.aggregate_path(root, "demo", "smoke").read_text())
    assert committed["key"] == cache.inputs_key(root, book.select(["demo"], root)[0], "smoke")
    loaded = sweeps.load_sweeps(root)
    assert loaded[("demo", "smoke")]["stale"] is False
    assert [o.cached for o in book.execute(["demo"], "smoke", root=root)] == [True]  # seed 0 was the book's run
    record = {
        "slug": "demo",
        "profile": "smoke",
        "origin": "this build",
        "claims": [dict(key="k", **{k: v for k, v in c.items() if k != "id"})],
    }
    record["claims"][0].update(holds=True, ours=0.0, comparison="< 3", paper="", source="")
    text = book.dashboard([record], loaded)
    assert "held in 3 of 4 seeds; FAILED in seed 3" in text and "varbook-sweeps" in text
    # unchanged inputs: a second sweep runs nothing; an edit makes the aggregate stale until rerun
    assert sweeps.sweep([0, 1, 2, 3], ["demo"], "smoke", root=root)[0]["claims"][0]["held"] == 3
    src = root / "book" / "gradients" / "demo.md"
    src.write_text(src.read_text() + "\n")
    assert sweeps.load_sweeps(root)[("demo", "smoke")]["stale"] is True
    assert "(stale" in book.dashboard([record], sweeps.load_sweeps(root))


def test_full_runs_stop_before_the_budget_runs_out(tmp_path, capsys, monkeypatch):
    root = make_project(tmp_path, {"first": RECORD.format(slug="first"), "second": RECORD.format(slug="second")})
    real_run = fullruns.run_task

    def run_at_least_two_seconds(task):  # a run always uses up the budget's last second
        start = time.perf_counter()
        result = real_run(task)
        time.sleep(max(0.0, 2.0 - (time.perf_counter() - start)))
        return result

    monkeypatch.setattr(fullruns, "run_task", run_at_least_two_seconds)
    assert [why for _, why, _ in fullruns.pending(root)] == ["no record", "no record"]
    budget = fullruns.DEFAULT_ESTIMATE + 1  # room for one chapter of the default estimate, not two
    outcomes = fullruns.run_missing(budget, root=root)
    assert [o.slug for o in outcomes] == ["first"] and outcomes[0].ok
    assert "stopping: second" in capsys.readouterr().out
    rec = json.loads((root / "results" / "full" / "first.json").read_text())
    assert rec["profile"] == "full" and rec["inputs_key"]
    assert not (root / "results" / "full" / "second.json").exists()
    assert [(c.slug, why) for c, why, _ in fullruns.pending(root)] == [("second", "no record")]
    src = root / "book" / "gradients" / "first.md"
    src.write_text(src.read_text() + "\n")
    assert [(c.slug, why) for c, why, _ in fullruns.pending(root)] == [
        ("second", "no record"),
        ("first", "stale record"),
    ]
    assert fullruns.pending(root)[1][2] == 1.0  # the stale record's own wall time is the estimate


KILL_ONCE = """import os, pathlib, signal
mark = pathlib.Path(r"{mark}")
if not mark.exists():
    mark.write_text("killed the worker once")
    os.kill(os.getppid(), signal.SIGKILL)  # the kernel's parent is the Dask worker process"""


def test_chapters_on_a_dask_cluster_survive_a_killed_worker(tmp_path):
    distributed = pytest.importorskip("distributed")
    mark = tmp_path / "killed"
    root = make_project(
        tmp_path,
        {"plain": RECORD.format(slug="plain"), "killer": KILL_ONCE.format(mark=mark), "broken": "1 / 0"},
    )
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None, silence_logs=50
    ) as cluster:
        outcomes = book.execute(None, "smoke", seed=2, root=root, scheduler=cluster, worker_root=str(root))
    by_slug = {o.slug: o for o in outcomes}
    assert mark.exists()  # the first attempt of "killer" took its worker down
    assert by_slug["plain"].ok and by_slug["killer"].ok and not by_slug["broken"].ok
    assert "ZeroDivisionError" in by_slug["broken"].error
    for slug in ("plain", "killer", "broken"):  # notebooks travelled back to the client
        assert (root / "_build" / "executed" / "smoke" / "book" / "gradients" / f"{slug}.ipynb").exists()
    rec = json.loads((root / "_build" / "results" / "smoke" / "plain.json").read_text())
    assert rec["seed"] == 2
    assert os.environ.get("VARBOOK_RESULTS_DIR") is None


def test_a_chapter_key_covers_the_modules_it_imports_and_no_other():
    root = book.project_root()
    ch = book.select(["fbm_sde"], root)[0]
    files = {p.relative_to(root / "src").as_posix() for p in cache.imported_files(root, cache.chapter_code(root, ch))}
    assert {"varbook/__init__.py", "varbook/runtime.py", "varbook/book/claims.py"} <= files
    assert any(f.startswith("varbook/sde/") for f in files)
    assert not any(f.startswith(("varbook/diffusion/", "varbook/recsys/")) for f in files)
    # code the key cannot read depends on the whole library
    assert cache.imported_files(root, "def (:") == cache.library_files(root)
