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


@pytest.mark.parametrize("page_name", toc_pages())
def test_page(server, browser, page_name):
    context = browser.new_context()
    page = context.new_page()
    outside: list[str] = []

    def route(r):
        host = urlparse(r.request.url).hostname
        if r.request.url.startswith(("data:", "blob:")) or host == "127.0.0.1":
            r.continue_()
        else:
            outside.append(r.request.url)
            r.abort()

    page.route("**/*", route)
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    response = page.goto(f"{server}/{page_name}.html", wait_until="load")
    assert response is not None and response.status == 200, f"{page_name} did not load"
    page.wait_for_timeout(300)
    body = page.inner_text("body")
    assert "Traceback (most recent call last)" not in body and "Error" not in page.title()
    assert not page.query_selector_all(".output.traceback, .output.error"), f"{page_name} shows an error output"
    has_math = page.evaluate("document.querySelectorAll('.math, div.math, span.math').length") > 0
    if has_math or page_name in CHAPTER_PAGES:
        page.wait_for_selector("mjx-container", state="attached", timeout=15000)
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
