"""The API reference (book/api.md) and its module lists (book/_ext/varbook_api.py)."""

import importlib.util
import pkgutil
import re
import sys
from pathlib import Path

import pytest

import varbook
from varbook.book import project_root

ROOT = project_root(Path(__file__).parent)
_spec = importlib.util.spec_from_file_location("varbook_api", ROOT / "book" / "_ext" / "varbook_api.py")
api = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(api)


def test_every_subpackage_has_a_section():
    text = (ROOT / "book" / "api.md").read_text(encoding="utf-8")
    documented = re.findall(r"^\.\. varbook-api:: (\S+)$", text, flags=re.M)
    public = {f"varbook.{m.name}" for m in pkgutil.iter_modules(varbook.__path__) if not m.name.startswith("_")}
    assert sorted(documented) == sorted(public), "book/api.md needs one section per public subpackage of varbook"
    assert len(documented) == len(set(documented))


def test_module_lists_cover_defining_modules_once():
    rst = api.api_rst("varbook.vi")
    modules = [line.split(":: ")[1] for line in rst if line.startswith(".. automodule::")]
    assert modules[0] == "varbook.vi" and "varbook.vi.kl" in modules
    assert len(modules) == len(set(modules)) and not any(".\x5f" in m for m in modules)  # no private modules
    assert rst.count("   :ignore-module-all:") == len(modules)  # re-exports are not documented twice


def test_a_module_that_needs_a_missing_peer_gets_a_note(tmp_path, monkeypatch):
    pkg = tmp_path / "demo_api_pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text('"""Demo."""\n')
    (pkg / "fine.py").write_text('"""Fine."""\n')
    (pkg / "peer.py").write_text('"""Needs a peer."""\nimport no_such_peer_package\n')
    (pkg / "broken.py").write_text('"""Broken."""\nfrom demo_api_pkg import nothing_here\n')
    monkeypatch.syspath_prepend(str(tmp_path))
    assert api.missing_package("demo_api_pkg.peer") == "no_such_peer_package"
    assert api.missing_package("demo_api_pkg.fine") is None
    with pytest.raises(ImportError):  # an error of the library itself is not hidden
        api.missing_package("demo_api_pkg.broken")
    (pkg / "broken.py").unlink()
    rst = "\n".join(api.api_rst("demo_api_pkg"))
    assert ".. automodule:: demo_api_pkg.fine" in rst and ".. automodule:: demo_api_pkg.peer" not in rst
    assert "Not documented in this build: it needs ``no_such_peer_package``." in rst
    for name in [m for m in sys.modules if m.startswith("demo_api_pkg")]:
        monkeypatch.delitem(sys.modules, name)
