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
