"""The book's Sphinx extension book/_ext/varbook_listing.py: listings of library code without docstrings."""

import ast
import importlib.util
import re
import textwrap
from pathlib import Path

import pytest

from varbook.book import chapters, project_root

ROOT = project_root(Path(__file__).parent)
_spec = importlib.util.spec_from_file_location("varbook_listing", ROOT / "book" / "_ext" / "varbook_listing.py")
listing = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(listing)

SOURCE = '''\
"""Module docstring."""

import functools

X = 1
"""An attribute docstring at module level (not part of any listing)."""


@functools.cache
def f(x):
    r"""Square :math:`x`, see :cite:`someone2020`.

    More text.
    """

    # a comment stays
    y = x * x
    "a string statement that is not a docstring stays"
    return y


class A:
    """A class."""

    size: int = 3
    """Attribute docstring."""

    def method(self):
        """Method docstring."""

        def inner():
            """Inner docstring."""
            return 1

        return inner()

    def only_doc(self):
        """A body that is only a docstring stays."""


def one_liner(): "a docstring on the def line stays"; return 0  # noqa: E702, E704
'''


def test_function_docstring_dropped_with_blank_lines_after_it():
    text = listing.strip_docstrings(SOURCE, "f")
    assert text == (
        "@functools.cache\ndef f(x):\n    # a comment stays\n    y = x * x\n"
        '    "a string statement that is not a docstring stays"\n    return y\n'
    )


def test_class_docstrings_dropped_everywhere_inside():
    text = listing.strip_docstrings(SOURCE, "A")
    assert "A class." not in text and "Attribute docstring." not in text
    assert "Method docstring." not in text and "Inner docstring." not in text
    assert "A body that is only a docstring stays." in text
    assert text.startswith("class A:\n    size: int = 3\n\n    def method(self):\n        def inner():\n")
    ast.parse(text)  # still valid Python


def test_method_by_dotted_name_and_one_liners():
    text = listing.strip_docstrings(SOURCE, "A.method")
    assert text.startswith("    def method(self):\n        def inner():\n            return 1\n")
    ast.parse(textwrap.dedent(text))
    assert listing.strip_docstrings(SOURCE, "one_liner").startswith('def one_liner(): "a docstring')
    assert listing.docstring_lines(SOURCE, "A.only_doc") == set()


def test_listings_are_dedented_and_laid_out_again_in_88_columns():
    long = (
        "def g(alpha, beta):\n"
        "    return combine(alpha, beta, gamma=alpha * beta, delta=alpha + beta, epsilon=alpha - beta)\n"
    )
    out = listing.fit_width(long)
    assert max(len(line) for line in out.splitlines()) <= 88 < max(len(line) for line in long.splitlines())
    assert ast.dump(ast.parse(out)) == ast.dump(ast.parse(long))  # only the layout changed
    assert listing.fit_width(long, None) == long
    assert listing.fit_width(textwrap.indent(long, "    "), None) == long  # a method starts at column 0
    assert listing.fit_width("x = 1  # short\n") == "x = 1  # short\n"
    comment = "x = 1  # " + "a comment that no formatter can shorten, " * 3 + "end\n"
    assert listing.fit_width(comment) == comment
    pragma = long.replace("beta)\n", "beta)  # fmt: skip\n").replace("    return", "    # fmt: off\n    return")
    out = listing.fit_width(pragma)
    assert "fmt:" not in out and max(len(line) for line in out.splitlines()) <= 88


def test_unknown_object():
    with pytest.raises(ValueError, match="no definition named 'A.nothing'"):
        listing.strip_docstrings(SOURCE, "A.nothing")


def test_module_names():
    assert listing.module_name(ROOT / "src" / "varbook" / "vi" / "kl.py") == "varbook.vi.kl"
    assert listing.module_name(ROOT / "src" / "varbook" / "vi" / "__init__.py") == "varbook.vi"
    assert listing.module_name(ROOT / "book" / "_ext" / "varbook_listing.py") is None


def _listings():
    out = []
    for chapter in chapters(ROOT):
        text = (ROOT / chapter.source).read_text(encoding="utf-8")
        for path, pyobject in re.findall(r"```\{literalinclude\} (\S+)\n(?::[\w-]+:.*\n)*?:pyobject: (\S+)", text):
            out.append(pytest.param((ROOT / chapter.source).parent / path, pyobject, id=f"{chapter.slug}:{pyobject}"))
    return out


@pytest.mark.parametrize("path, pyobject", _listings())
def test_every_chapter_listing_strips_to_valid_code_without_docstrings(path, pyobject):
    assert path.exists(), f"the chapter shows {path.name}, which does not exist"
    source = path.read_text(encoding="utf-8")
    try:
        text = listing.strip_docstrings(source, pyobject)
    except ValueError:
        pytest.fail(f"the chapter shows {pyobject}, which {path.name} does not define")
    tree = ast.parse(textwrap.dedent(text))
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) and len(node.body) > 1:
            assert ast.get_docstring(node) is None, f"{pyobject}: docstring of {node.name} left in the listing"


def test_in_a_sphinx_build(tmp_path):
    """The directive drops the docstring; the link under the listing resolves to the API entry."""
    from sphinx.application import Sphinx

    pkg = tmp_path / "src" / "demo"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text('"""Demo package."""\n')
    (pkg / "mod.py").write_text(SOURCE.replace(":cite:`someone2020`", "the book"))
    (tmp_path / "conf.py").write_text(
        "import sys\n"
        f"sys.path[:0] = [{str(tmp_path / 'src')!r}, {str(ROOT / 'book' / '_ext')!r}]\n"
        "extensions = ['sphinx.ext.autodoc', 'varbook_listing']\n"
    )
    (tmp_path / "index.rst").write_text(
        "Demo\n====\n\n.. literalinclude:: src/demo/mod.py\n   :pyobject: f\n\n"
        ".. literalinclude:: src/demo/mod.py\n   :pyobject: A.only_doc\n\n"
        ".. literalinclude:: src/demo/mod.py\n   :lines: 9-12\n\n"
        ".. toctree::\n\n   api\n"
    )
    (tmp_path / "api.rst").write_text("API\n===\n\n.. automodule:: demo.mod\n   :members: f, A\n")
    out = tmp_path / "_html"
    app = Sphinx(str(tmp_path), str(tmp_path), str(out), str(tmp_path / "_doctrees"), "html", status=None)
    app.warningiserror = True
    app.build(force_all=True)
    html = (out / "index.html").read_text()
    body = html.split('<div class="highlight">', 1)[1]
    first_listing = body.split("</pre>", 1)[0]
    assert "More text." not in first_listing and "a comment stays" in first_listing
    assert re.search(r'<p class="varbook-listing-ref">API reference: <a [^>]*href="api.html#demo.mod.f"', html)
    # A method not in the API reference links to its nearest documented parent, the class.
    assert 'href="api.html#demo.mod.A"' in html
    assert "More text." in (out / "api.html").read_text()
    assert html.count("varbook-listing-ref") == 2  # the :lines: listing is left as it is


def test_long_comments_are_wrapped_in_a_listing():
    code = "def f():\n    # " + " ".join(["primal"] * 30) + "\n    return 1\n"
    out = listing.fit_width(code, 60)
    assert max(len(line) for line in out.splitlines()) <= 60
    assert out.count("# primal") >= 3 and out.rstrip().endswith("return 1")
    assert " ".join(w for line in out.splitlines() for w in line.split() if w == "primal") == " ".join(["primal"] * 30)
