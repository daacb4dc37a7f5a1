"""The built site in a real browser: Playwright driving Debian's chromium, fully offline.

Needs ``_build/html`` (``make site``). Without /usr/bin/chromium the test skips with a message,
unless REQUIRE_BROWSER=1, when it fails.
"""

import functools
import http.server
import os
import shutil
import threading
from pathlib import Path
from urllib.parse import urlparse

import pytest
import yaml

from varbook import book

ROOT = book.project_root(Path(__file__).parent)
HTML = ROOT / "_build" / "html"
CHROMIUM = os.environ.get("VARBOOK_CHROMIUM", "/usr/bin/chromium")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _need(condition: bool, why: str):
    if condition:
        return
    if os.environ.get("REQUIRE_BROWSER") == "1":
        pytest.fail(why + " (REQUIRE_BROWSER=1)")
    pytest.skip(why)


def toc_pages() -> list[str]:
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    return book.toc_files(toc)


CHAPTER_PAGES = {c.docname for c in book.chapters(ROOT)}


@pytest.fixture(scope="module")
def server():
    _need(HTML.joinpath("index.html").exists(), "the site is not built: run `make site` first")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(HTML))
    handler.log_message = lambda *a, **k: None
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="module")
def browser():
    _need(
        Path(CHROMIUM).exists() or shutil.which(CHROMIUM) is not None,
        f"no chromium at {CHROMIUM}: apt-get install chromium",
    )
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _need(False, "the playwright package is not installed (the `test` extra)")
    with sync_playwright() as pw:  # launch() gives chromium a fresh, empty --user-data-dir of its own
        b = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield b
        b.close()


def _offline(page) -> list[str]:
    """Let the page load only from the local server; return the list of refused requests."""
    outside: list[str] = []

    def route(r):
        host = urlparse(r.request.url).hostname
        if r.request.url.startswith(("data:", "blob:")) or host == "127.0.0.1":
            r.continue_()
        else:
            outside.append(r.request.url)
            r.abort()

    page.route("**/*", route)
    return outside


FIGURES_WITHOUT_CAPTION = """() => Array.from(document.querySelectorAll('.cell_output img'))
    .filter(img => {
        const fig = img.closest('figure');
        const cap = fig && fig.querySelector('figcaption .caption-number');
        return !(cap && /Figure \\d+/.test(cap.textContent));
    })
    .map(img => (img.closest('.cell') || img).id || img.src.slice(-40))"""


@pytest.mark.parametrize("page_name", toc_pages())
def test_page(server, browser, page_name):
    context = browser.new_context()
    page = context.new_page()
    outside = _offline(page)
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    # The API reference is one long page (hundreds of signatures and formulas): give it time.
    response = page.goto(f"{server}/{page_name}.html", wait_until="load", timeout=120_000)
    assert response is not None and response.status == 200, f"{page_name} did not load"
    page.wait_for_timeout(300)
    # Doctest examples in the API reference may show an expected exception: not an error.
    body = page.evaluate(
        "() => { const b = document.body.cloneNode(true);"
        " b.querySelectorAll('div.doctest').forEach(e => e.remove()); return b.textContent; }"
    )
    assert "Traceback (most recent call last)" not in body and "Error" not in page.title()
    assert not page.query_selector_all(".output.traceback, .output.error"), f"{page_name} shows an error output"
    has_math = page.evaluate("document.querySelectorAll('.math, div.math, span.math').length") > 0
    if has_math or page_name in CHAPTER_PAGES:
        page.wait_for_selector("mjx-container", state="attached", timeout=120_000)
        assert page.evaluate("document.querySelectorAll('mjx-container').length") > 0, "math not typeset"
    if page_name in CHAPTER_PAGES:
        loaded = page.evaluate(
            "Array.from(document.querySelectorAll('.cell_output img, .output img'))"
            ".filter(i => i.complete && i.naturalWidth > 0).length"
        )
        assert loaded >= 1, f"{page_name}: no figure loaded"
        assert page.query_selector("table.varbook-claims") is not None, f"{page_name}: no claims table"
        heads = page.evaluate(
            "Array.from(document.querySelectorAll('table.varbook-claims th')).map(t => t.textContent)"
        )
        assert {"verdict", "paper says", "where", "threshold from"} <= set(heads), (
            f"{page_name}: claims columns {heads}"
        )
        bare = page.evaluate(FIGURES_WITHOUT_CAPTION)
        assert not bare, f"{page_name}: {len(bare)} figure(s) without a numbered caption: {bare[:3]}"
        link = page.query_selector("a[href$='.ipynb']")
        assert link is not None, f"{page_name}: no notebook download"
        notebook = page.request.get(page.evaluate("a => a.href", link))
        assert notebook.status == 200 and '"cells"' in notebook.text(), f"{page_name}: the notebook does not download"
    assert not outside, f"{page_name} sent requests off the machine: {outside[:5]}"
    assert not errors, f"{page_name} raised JavaScript errors: {errors[:3]}"
    context.close()


WIDE_BLOCKS = """() => Array.from(document.querySelectorAll('div.highlight pre, div.cell_output pre'))
    .filter(pre => pre.scrollWidth > pre.clientWidth + 1)
    .map(pre => {
        const lines = pre.textContent.split('\\n');
        const longest = lines.reduce((a, b) => (b.length > a.length ? b : a), '');
        return `${longest.length} columns (${pre.scrollWidth} px in ${pre.clientWidth} px): ${longest.trim().slice(0, 60)}`;
    })"""


@pytest.mark.parametrize("page_name", sorted(CHAPTER_PAGES))
def test_code_fits_the_page_at_1400px(server, browser, page_name):
    """Chapter code keeps to 88 columns, and at 1400 px no code block or output scrolls sideways."""
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    _offline(page)
    page.goto(f"{server}/{page_name}.html", wait_until="domcontentloaded", timeout=120_000)
    page.wait_for_load_state("load", timeout=120_000)  # fonts and figures laid out
    wide = page.evaluate(WIDE_BLOCKS)
    context.close()
    assert not wide, f"{page_name}: {len(wide)} block(s) scroll sideways at 1400 px:\n" + "\n".join(wide[:8])


@pytest.mark.parametrize("page_name", sorted(CHAPTER_PAGES))
def test_claims_table_scrolls_in_its_own_box_on_a_phone(server, browser, page_name):
    context = browser.new_context(viewport={"width": 400, "height": 800})
    page = context.new_page()
    _offline(page)
    page.goto(f"{server}/{page_name}.html", wait_until="load", timeout=120_000)
    box = page.evaluate(
        """() => {
            const wrap = document.querySelector('div.varbook-claims-wrap');
            if (!wrap) return null;
            const r = wrap.getBoundingClientRect();
            return {overflow: getComputedStyle(wrap).overflowX, right: r.right,
                    page: document.documentElement.clientWidth,
                    inner: wrap.scrollWidth > wrap.clientWidth};
        }"""
    )
    context.close()
    assert box is not None, f"{page_name}: no claims table"
    assert box["overflow"] in ("auto", "scroll"), f"{page_name}: the claims table does not scroll in its box"
    assert box["right"] <= box["page"] + 1, f"{page_name}: the claims table's box overflows the page: {box}"


STUDENT = ROOT / "_build" / "html-student"


@pytest.mark.parametrize("page_name", sorted(CHAPTER_PAGES))
def test_solutions_are_folded_and_open_on_a_click(server, browser, page_name):
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    _offline(page)
    page.goto(f"{server}/{page_name}.html", wait_until="load", timeout=120_000)
    solutions = page.locator("div.solution")
    assert solutions.count() >= 3, f"{page_name}: {solutions.count()} solution(s) on the page"
    first = solutions.first
    body = first.locator(":scope > :not(.admonition-title)").first
    assert not body.is_visible(), f"{page_name}: the first solution is not folded"
    first.locator(".admonition-title").click()
    page.wait_for_timeout(300)
    assert body.is_visible(), f"{page_name}: the solution did not open on a click"
    context.close()


def test_student_edition_has_no_solutions():
    from bs4 import BeautifulSoup

    _need(STUDENT.joinpath("index.html").exists(), "the student edition is not built: run `make site` first")
    _need(HTML.joinpath("index.html").exists(), "the instructor edition is not built: run `make site` first")
    for slug_page in sorted(CHAPTER_PAGES):
        teacher = BeautifulSoup((HTML / f"{slug_page}.html").read_text(encoding="utf-8"), "html.parser")
        student_html = (STUDENT / f"{slug_page}.html").read_text(encoding="utf-8")
        student = BeautifulSoup(student_html, "html.parser")
        answers = [" ".join(d.get_text(" ").split()) for d in teacher.select("div.solution")]
        assert answers, f"{slug_page}: the instructor edition shows no solution"
        assert student.select("div.exercise"), f"{slug_page}: the student edition lost the exercises"
        assert not student.select("div.solution"), f"{slug_page}: a solution block in the student edition"
        text = " ".join(student.get_text(" ").split())
        for answer in answers:
            body = answer.split(" ", 4)[-1][:60]  # past the title "Solution to Exercise n"
            assert body not in text, f"{slug_page}: solution text in the student edition: {body!r}"
    notebooks = sorted(STUDENT.rglob("*.ipynb"))
    assert len(notebooks) >= len(CHAPTER_PAGES), "the student edition's notebooks are missing"
    for nb in notebooks:
        assert "{solution" not in nb.read_text(encoding="utf-8"), f"{nb.name}: a solution in a downloadable notebook"


@pytest.mark.parametrize("kind", ["primary", "secondary"])
def test_phone_drawers_open(server, browser, kind):
    """At 420 px the menu button opens the site navigation and the contents button the page's contents."""
    context = browser.new_context(viewport={"width": 420, "height": 860})
    page = context.new_page()
    _offline(page)
    page.goto(f"{server}/book/gradients/straight_through.html", wait_until="load", timeout=120_000)
    page.locator(f".{kind}-toggle:visible").first.click()
    page.wait_for_timeout(400)
    assert page.evaluate(f"document.getElementById('pst-{kind}-sidebar-modal').open"), f"the {kind} drawer did not open"
    links = page.locator(f"#pst-{kind}-sidebar-modal a:visible")
    assert links.count() > 0, f"the {kind} drawer shows no link"
    context.close()


def test_sidebar_collapses_on_a_wide_screen(server, browser):
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    _offline(page)
    page.goto(f"{server}/book/gradients/straight_through.html", wait_until="load", timeout=120_000)
    hidden = "document.getElementById('pst-primary-sidebar').classList.contains('pst-sidebar-hidden')"
    assert not page.evaluate(hidden)
    page.locator(".primary-toggle:visible").first.click()
    page.wait_for_timeout(400)
    assert page.evaluate(hidden), "the sidebar did not collapse"
    context.close()


def test_dashboard_matrix_links_each_chapter_to_its_check(server, browser):
    context = browser.new_context(viewport={"width": 420, "height": 860})
    page = context.new_page()
    _offline(page)
    page.goto(f"{server}/book/reproducibility.html", wait_until="load", timeout=120_000)
    rows = page.locator("table.varbook-matrix tbody tr")
    assert rows.count() >= len(CHAPTER_PAGES), "the matrix lacks chapters"
    links = page.locator("table.varbook-matrix a")
    hrefs = [links.nth(i).get_attribute("href") for i in range(links.count())]
    assert len(hrefs) >= len(CHAPTER_PAGES) and all(h.endswith("#reproduction-check") for h in hrefs)
    wide = page.evaluate(
        "() => Array.from(document.querySelectorAll('div.varbook-table-wrap'))"
        ".filter(d => d.getBoundingClientRect().right > document.documentElement.clientWidth + 1).length"
    )
    assert wide == 0, "a table's box overflows the page at 420 px"
    assert page.evaluate("document.documentElement.scrollWidth <= document.documentElement.clientWidth + 1")
    page.goto(f"{server}/book/{hrefs[0]}", wait_until="load", timeout=120_000)
    assert page.locator("#reproduction-check").count() == 1, "the link does not reach the reproduction check"
    context.close()


def test_no_build_path_in_any_file_of_the_site():
    _need(HTML.joinpath("index.html").exists(), "the site is not built: run `make site` first")
    marker = str(ROOT.resolve())
    leaks = []
    for path in HTML.rglob("*"):
        if path.is_file() and path.suffix in (".html", ".ipynb", ".md", ".txt", ".js", ".json", ".py"):
            if marker in path.read_text(encoding="utf-8", errors="ignore"):
                leaks.append(str(path.relative_to(HTML)))
    assert not leaks, f"{len(leaks)} file(s) of the site name the build's folder {marker}: {leaks[:5]}"


def test_chapter_pages_offer_the_reader_notebook_and_source(server, browser):
    context = browser.new_context()
    page = context.new_page()
    _offline(page)
    for page_name in sorted(CHAPTER_PAGES):
        slug = page_name.rsplit("/", 1)[-1]
        page.goto(f"{server}/{page_name}.html", wait_until="domcontentloaded", timeout=120_000)
        for name in (f"{slug}.reader.ipynb", f"{slug}.source.md"):
            link = page.query_selector(f"a[href$='{name}']")
            assert link is not None, f"{page_name}: no download of {name}"
            got = page.request.get(page.evaluate("a => a.href", link))
            assert got.status == 200, f"{page_name}: {name} does not download"
    context.close()


def test_reader_notebook_runs_outside_the_build(tmp_path):
    """A downloaded reader notebook runs with papermill in a folder of its own (the fastest chapter)."""
    import json

    import papermill

    _need(HTML.joinpath("index.html").exists(), "the site is not built: run `make site` first")
    records = {p.stem: json.loads(p.read_text()) for p in (ROOT / "_build" / "results" / "smoke").glob("*.json")}
    slug = min(records, key=lambda s: records[s].get("wall_seconds", 1e9)) if records else "wta_crs"
    (found,) = list((HTML / "_downloads").rglob(f"{slug}.reader.ipynb"))
    notebook = tmp_path / found.name
    notebook.write_bytes(found.read_bytes())
    env = {"VARBOOK_RESULTS_DIR": str(tmp_path / "results")}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        papermill.execute_notebook(
            str(notebook), str(tmp_path / "out.ipynb"), cwd=str(tmp_path), kernel_name="python3", progress_bar=False
        )
    finally:
        for k, v in old.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
    assert (tmp_path / "results" / "smoke" / f"{slug}.json").exists(), "the reader notebook saved no claims record"
