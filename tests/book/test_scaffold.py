"""``python -m varbook.book new PART SLUG``: a chapter from the template, in a copy of the project.

The scaffolded chapter must pass every gate a chapter passes: paired notebook, ruff at 88
columns, the style gate, the wiring checks of every chapter
(tests/chapters/test_chapter_wiring.py), and it must run as a plain script and write
a record in which every claim holds.
"""

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import jupytext
import pytest
import yaml

from varbook.book import chapters, project_root
from varbook.book.__main__ import main
from varbook.book.scaffold import ScaffoldError, label, new_chapter
from varbook.book.style import MAX_CODE_SHARE, MAX_VISIBLE_CELL, measure

ROOT = project_root(Path(__file__).parent)
BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def skeleton(tmp_path_factory) -> Path:
    """The project's configuration, template and part pages, with ``src`` linked."""
    root = tmp_path_factory.mktemp("project")
    for name in ("_toc.yml", "_config.yml", "pyproject.toml", "jupytext.toml"):
        shutil.copy2(ROOT / name, root / name)
    shutil.copytree(ROOT / "book" / "_template", root / "book" / "_template")
    shutil.copy2(ROOT / "book" / "ruff.toml", root / "book" / "ruff.toml")
    for index in ROOT.glob("book/*/index.md"):
        (root / index.relative_to(ROOT)).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(index, root / index.relative_to(ROOT))
    (root / "src").symlink_to(ROOT / "src", target_is_directory=True)
    return root


@pytest.fixture(scope="module")
def made(skeleton):
    return new_chapter("gradients", "demo_chapter", skeleton)


def _cells(nb) -> list:
    return [(c["cell_type"], "".join(c["source"]).strip(), c.get("metadata", {}).get("tags", [])) for c in nb["cells"]]


def test_files_toc_and_pairing(skeleton, made):
    for path in made.files():
        assert (skeleton / path).exists(), path
    assert made.index is None  # the part existed
    toc = yaml.safe_load((skeleton / "_toc.yml").read_text())
    part = next(p for p in toc["parts"] if p["chapters"][0]["file"] == "book/gradients/index")
    assert part["chapters"][0]["sections"][-1] == {"file": "book/gradients/demo_chapter", "title": "Demo chapter"}
    assert "demo_chapter" in [c.slug for c in chapters(skeleton)]
    text = (skeleton / made.chapter).read_text()
    assert f"({label('demo_chapter')})=" in text and 'start("demo_chapter"' in text
    assert ":label: demo-chapter-kl" in text and "{eq}`demo-chapter-kl`" in text
    assert '"chapter"' not in text and "_template" not in text.replace("(book/_template)", "")
    md = jupytext.read(skeleton / made.chapter)
    ipynb = json.loads((skeleton / made.notebook).read_text())
    assert _cells(md) == _cells(ipynb), "the notebook is not paired with the chapter"
    assert ipynb["metadata"]["jupytext"]["formats"] == "ipynb,md:myst"
    assert all(c.get("outputs", []) == [] for c in ipynb["cells"])


def test_lint_format_and_style(skeleton, made):
    ruff = str(BIN / "ruff")
    for args in (["check"], ["format", "--check"]):
        out = subprocess.run(
            [ruff, *args, "--config", "book/ruff.toml", str(made.notebook)], cwd=skeleton, capture_output=True
        )
        assert out.returncode == 0, out.stdout.decode() + out.stderr.decode()
    shape = measure(skeleton / made.chapter)
    assert shape.code_share <= MAX_CODE_SHARE and shape.largest_visible_cell <= MAX_VISIBLE_CELL, shape


def test_it_passes_the_wiring_checks(skeleton, made):
    path = ROOT / "tests" / "chapters" / "test_chapter_wiring.py"
    spec = importlib.util.spec_from_file_location("chapter_wiring", path)
    wiring = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(wiring)
    source = skeleton / made.chapter
    wiring.check_claims_wiring(source)
    wiring.check_controls(source)
    assert wiring.listings(source)
    for path, pyobject in wiring.listings(source):
        wiring.check_listing(source, path, pyobject, root=skeleton)
    assert not (skeleton / "tests").exists(), "a chapter needs no test module of its own"


def test_runs_as_a_script_and_its_claims_hold(skeleton, made, tmp_path):
    script = tmp_path / "demo_chapter.py"
    subprocess.run([str(BIN / "jupytext"), "--quiet", "--to", "py", str(skeleton / made.chapter), "-o", str(script)])
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"), VARBOOK_RESULTS_DIR=str(tmp_path / "results"))
    env.update(MPLBACKEND="Agg", OMP_NUM_THREADS="1")
    env.pop("VARBOOK_PROFILE", None)
    out = subprocess.run(
        [sys.executable, str(script)], cwd=(skeleton / made.chapter).parent, env=env, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    record = json.loads((tmp_path / "results" / "smoke" / "demo_chapter.json").read_text())
    claims = {c["key"]: c for c in record["claims"]}
    assert {"mc_unbiased", "kl_self_zero", "peer_pyro"} <= set(claims)
    peer_missing = importlib.util.find_spec("pyro") is None
    for key, c in claims.items():
        if key == "peer_pyro" and peer_missing:
            assert c["holds"] is None
            continue
        assert c["holds"] is True and c["control_holds"] is not True, c
    assert claims["mc_unbiased"]["control_holds"] is False  # the shifted sampler is rejected
    assert claims["kl_self_zero"]["kind"] == "sanity"


def test_new_part_gets_an_index_and_a_toc_part(skeleton):
    made = new_chapter("new_part", "other_demo", skeleton)
    assert made.index == Path("book/new_part/index.md") and (skeleton / made.index).exists()
    toc = yaml.safe_load((skeleton / "_toc.yml").read_text())
    captions = [p["caption"] for p in toc["parts"]]
    assert captions[-2:] == ["New part", "Back matter"]
    assert toc["parts"][-2]["chapters"] == [
        {"file": "book/new_part/index", "sections": [{"file": "book/new_part/other_demo", "title": "Other demo"}]}
    ]


@pytest.mark.parametrize(
    "part, slug, message",
    [
        ("gradients", "demo_chapter", "exists already"),
        ("latent", "demo_chapter", "exists already"),  # slugs are unique across parts
        ("gradients", "Bad-Name", "bad slug"),
        ("Gradients", "fine", "bad part"),
        ("_template", "fine", "bad part"),
        ("gradients", "chapter", "reserved"),
    ],
)
def test_refuses_taken_or_bad_names(skeleton, made, part, slug, message):
    toc = (skeleton / "_toc.yml").read_text()
    with pytest.raises(ScaffoldError, match=message):
        new_chapter(part, slug, skeleton)
    assert (skeleton / "_toc.yml").read_text() == toc


def test_command_line(skeleton, made, monkeypatch, capsys):
    monkeypatch.chdir(skeleton)
    assert main(["new", "gradients", "demo_chapter"]) == 2
    assert "exists already" in capsys.readouterr().err
    assert main(["new", "gradients", "cli_demo"]) == 0
    assert "wrote book/gradients/cli_demo.md" in capsys.readouterr().out
