"""Project metadata on the site: the theme options keep Jupyter Book's, the repository buttons follow a setting."""

import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from varbook import book
from varbook.book import site

ROOT = book.project_root()


def test_config_keeps_jupyter_books_theme_options(tmp_path):
    for name in ("_config.yml", "_toc.yml"):
        shutil.copy2(ROOT / name, tmp_path / name)
    jb = shutil.which("jupyter-book", path=str(Path(sys.executable).parent)) or "jupyter-book"
    subprocess.run([jb, "config", "sphinx", str(tmp_path)], check=True, stdout=subprocess.DEVNULL)
    conf = (tmp_path / "conf.py").read_text()
    namespace: dict = {}
    line = next(x for x in conf.splitlines() if x.startswith("html_theme_options"))
    exec(line, namespace)
    options = namespace["html_theme_options"]
    assert "MIT" in options["extra_footer"] and "CC BY 4.0" in options["extra_footer"]
    assert options["home_page_in_toc"] is True


def test_repository_url_comes_from_the_config_or_the_environment(tmp_path, monkeypatch):
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    (tmp_path / "_config.yml").write_text(yaml.safe_dump(config))
    monkeypatch.delenv("VARBOOK_REPOSITORY_URL", raising=False)
    assert site.repository_url(tmp_path) == ""  # unset: no repository or issue button
    config["repository"]["url"] = "https://example.org/varbook"
    (tmp_path / "_config.yml").write_text(yaml.safe_dump(config))
    assert site.repository_url(tmp_path) == "https://example.org/varbook"
    monkeypatch.setenv("VARBOOK_REPOSITORY_URL", "https://example.org/fork")
    assert site.repository_url(tmp_path) == "https://example.org/fork"


def test_licence_is_stated():
    text = (ROOT / "LICENSE").read_text()
    assert "MIT License" in text and "CC BY 4.0" in text
    assert "LICENSE" in (ROOT / "README.md").read_text()
