"""The bibliography: every entry links its paper, its labels are the citations of the text, every cited key exists."""

import re
import sys

import pytest
from pybtex.database import parse_file

from varbook.book import project_root

ROOT = project_root()
sys.path.insert(0, str(ROOT / "book" / "_ext"))
import varbook_bib  # noqa: E402

BIB = parse_file(str(ROOT / "references.bib"))


def test_every_entry_has_a_url_or_doi():
    missing = [key for key, e in BIB.entries.items() if not {"url", "doi", "eprint"} & {f.lower() for f in e.fields}]
    assert not missing, f"entries without a URL or DOI: {missing}"


def test_labels_are_author_year_and_unique():
    labels = list(varbook_bib.AuthorYearLabels().format_labels(BIB.entries.values()))
    assert len(labels) == len(set(labels)), "two entries share a label"
    assert varbook_bib.author_year(BIB.entries["kingma2014auto"]) == "Kingma and Welling, 2014"
    assert varbook_bib.author_year(BIB.entries["szekely2013energy"]) == "Székely and Rizzo, 2013"
    assert varbook_bib.author_year(BIB.entries["albergo2023stochastic"]) == "Albergo et al., 2023"
    for label in labels:
        assert re.fullmatch(r".+, (\d{4}[a-z]?|n\.d\.)", label), label


def test_shared_labels_get_suffixes():
    entries = [BIB.entries["song2021scorebased"], BIB.entries["song2021denoising"]]
    assert list(varbook_bib.AuthorYearLabels().format_labels(entries)) == ["Song et al., 2021a", "Song et al., 2021b"]


@pytest.mark.parametrize("folder", ["book", "src"])
def test_every_cited_key_is_in_the_bibliography(folder):
    pattern = re.compile(r"\{cite(?::\w+)?\}`([^`]+)`|:cite(?::\w+)?:`([^`]+)`")
    cited = set()
    for path in (ROOT / folder).rglob("*.md" if folder == "book" else "*.py"):
        for a, b in pattern.findall(path.read_text(encoding="utf-8")):
            cited |= {k.strip() for k in (a or b).split(",")}
    cited.discard("key")  # the template's placeholder
    assert cited, "no citation found"
    assert not sorted(cited - set(BIB.entries)), f"cited but not in references.bib: {sorted(cited - set(BIB.entries))}"
