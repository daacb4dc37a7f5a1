"""Stage the executed chapters with the book's pages and build the HTML site with Sphinx."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from ..runtime import check_choice, resolve_profile
from .dashboard import build_commit, dashboard, load_records
from .frontpage import fill_pages, fill_run_times
from .reader import reader_notebook
from .runner import chapters, project_root
from .sweeps import load_sweeps
from .teaching import EDITIONS, book_map, draw_map, strip_solutions, strip_solutions_text, teaching_page

DASHBOARD_MARKER = "<!-- varbook:dashboard -->"
TEACHING_MARKER = "<!-- varbook:teaching -->"
MAP_FILE = "book-map.svg"


DOWNLOADS = (
    "**Run this chapter yourself:** the {{download}}`reader notebook <{slug}.reader.ipynb>` runs in plain "
    "Jupyter after download (library code inline, citations as text), and the "
    "{{download}}`MyST source <{slug}.source.md>` is the chapter as written (open it with Jupytext)."
)


def _add_downloads(notebook: Path, slug: str) -> None:
    """Put the download links of the reader notebook and the MyST source under the chapter's title."""
    nb = json.loads(notebook.read_text(encoding="utf-8"))
    cell = {"cell_type": "markdown", "id": f"{slug}-downloads", "metadata": {}, "source": DOWNLOADS.format(slug=slug)}
    nb["cells"].insert(1, cell)
    notebook.write_text(json.dumps(nb, indent=1) + "\n", encoding="utf-8")


def _drop_build_paths(site: Path, root: Path) -> None:
    """No path of the machine that built the site in what a reader downloads: papermill's input and
    output paths go, and a path inside the project (in a warning, say) becomes relative to it."""
    prefix = str(root.resolve()) + "/"
    for path in sorted((site / "book").rglob("*.ipynb")):
        nb = json.loads(path.read_text(encoding="utf-8"))
        pm = nb.get("metadata", {}).get("papermill", {})
        for key in ("input_path", "output_path"):
            pm.pop(key, None)
        text = json.dumps(nb, indent=1).replace(prefix, "")
        path.write_text(text + "\n", encoding="utf-8")


def html_dir(root: Path, edition: str = "instructor") -> Path:
    """Where the site of an edition is built: ``_build/html`` (instructor), ``_build/html-student``."""
    check_choice("edition", edition, EDITIONS)
    return root / "_build" / ("html" if edition == "instructor" else f"html-{edition}")


def stage(profile: str, root: Path | None = None, edition: str = "instructor") -> Path:
    """Assemble ``_build/site``: the book's pages, the executed chapters in place of their sources,
    the dashboard and the teaching guide; the student edition drops every solution."""
    check_choice("edition", edition, EDITIONS)
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
            (site / src).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(executed, site / src.with_suffix(".ipynb"))
        else:
            missing.append(src.stem)
    if missing:
        raise FileNotFoundError(
            f"chapter(s) not executed in the {profile} profile: {', '.join(missing)}; run them first"
        )
    for ch in chapters(root):  # what a reader downloads: a plain notebook and the MyST source
        folder = site / ch.source.parent
        nb = reader_notebook(root, ch, edition)
        (folder / f"{ch.slug}.reader.ipynb").write_text(json.dumps(nb, indent=1) + "\n", encoding="utf-8")
        shutil.copy2(root / ch.source, folder / f"{ch.slug}.source.md")
        _add_downloads(site / ch.source.with_suffix(".ipynb"), ch.slug)
        fill_run_times(site / ch.source.with_suffix(".ipynb"), root, ch.slug, profile)
    _drop_build_paths(site, root)
    if edition == "student":  # no solution on any page, nor in any notebook a reader downloads
        for path in sorted((site / "book").rglob("*.ipynb")):
            nb = json.loads(path.read_text(encoding="utf-8"))
            path.write_text(json.dumps(strip_solutions(nb), indent=1) + "\n", encoding="utf-8")
        for path in sorted((site / "book").rglob("*.md")):
            text = path.read_text(encoding="utf-8")
            path.write_text(strip_solutions_text(text), encoding="utf-8")
    (site / "src").symlink_to(root / "src", target_is_directory=True)
    repro = site / "book" / "reproducibility.md"
    text = repro.read_text(encoding="utf-8")
    if DASHBOARD_MARKER not in text:
        raise ValueError(f"book/reproducibility.md lacks the marker {DASHBOARD_MARKER}")
    repro.write_text(
        text.replace(
            DASHBOARD_MARKER,
            dashboard(
                load_records(root),
                load_sweeps(root),
                {c.slug: f"{c.part}/{c.slug}.html#reproduction-check" for c in chapters(root)},
                build_commit(root),
            ),
        ),
        encoding="utf-8",
    )
    fill_pages(site, root, profile)
    guide = site / "book" / "teaching.md"
    if guide.exists():
        text = guide.read_text(encoding="utf-8")
        if TEACHING_MARKER not in text:
            raise ValueError(f"book/teaching.md lacks the marker {TEACHING_MARKER}")
        draw_map(book_map(root), guide.parent / MAP_FILE)
        guide.write_text(text.replace(TEACHING_MARKER, teaching_page(root, profile, MAP_FILE)), encoding="utf-8")
    return site


def _import_paths(site: Path) -> list[str]:
    """What the Sphinx build must import from: the staged ``src``, and the folders of the local
    extensions named in ``_config.yml`` (``sphinx: local_extensions:``)."""
    import yaml

    config = yaml.safe_load((site / "_config.yml").read_text(encoding="utf-8")) or {}
    local = (config.get("sphinx") or {}).get("local_extensions") or {}
    paths = [str(site / "src")]
    for folder in local.values():
        path = str((site / folder).resolve())
        if path not in paths:
            paths.append(path)
    return paths


def repository_url(site: Path) -> str:
    """The repository the site links to: ``VARBOOK_REPOSITORY_URL``, else ``repository.url`` of ``_config.yml``."""
    import os

    import yaml

    env = os.environ.get("VARBOOK_REPOSITORY_URL", "").strip()
    if env:
        return env
    config = yaml.safe_load((site / "_config.yml").read_text(encoding="utf-8")) or {}
    return str((config.get("repository") or {}).get("url") or "").strip()


def build_site(profile: str | None = None, root: Path | None = None, edition: str = "instructor") -> Path:
    """Stage and build the HTML site of ``edition`` (:func:`html_dir`) with warnings as errors; return ``index.html``."""
    root = root or project_root()
    profile = resolve_profile(profile)
    site = stage(profile, root, edition)
    jb = shutil.which("jupyter-book", path=str(Path(sys.executable).parent)) or "jupyter-book"
    subprocess.run([jb, "config", "sphinx", str(site)], check=True, stdout=subprocess.DEVNULL)
    with open(site / "conf.py", "a", encoding="utf-8") as conf:
        # Thebe (live code through a remote kernel) needs the network, and sphinx-thebe 0.3 declares
        # its script twice under sphinx-book-theme 1.3, a JavaScript error on every page.
        conf.write('\nextensions = [e for e in extensions if e != "sphinx_thebe"]\n')
        # autodoc imports varbook from the staged src; local extensions live in book/_ext.
        conf.write(f"\nimport sys\n\nsys.path[:0] = {_import_paths(site)!r}\ndel sys\n")
        url = repository_url(site)
        if url:  # the repository and issue buttons, only where there is a repository to link
            conf.write(
                f"\nhtml_theme_options.update(repository_url={url!r}, use_repository_button=True,"
                " use_issues_button=True)\n"
            )
    out = html_dir(root, edition)
    if out.exists():
        shutil.rmtree(out)
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
        str(out),
    ]
    subprocess.run(cmd, check=True)
    index = out / "index.html"
    if not index.exists():
        raise FileNotFoundError(f"the site build wrote no {index}")
    return index
