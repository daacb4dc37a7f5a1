"""The bibliography's labels are the citations of the text: "Kingma and Welling, 2014".

sphinxcontrib-bibtex's default labels are alphabetic codes ([KW14]) that a reader
cannot match with the author-year citations of the text. This extension registers the
pybtex style ``varbook``: the entries are formatted as ``unsrt`` formats them (with
their URL or DOI as links) and labelled *first author, year*: "Author, 2014", "Author
and Other, 2014", "Author et al., 2014", with the suffixes a, b, ... where two entries
would share a label. The site cites with ``bibtex_reference_style: label``, so a
citation in the text shows the very label of its entry in the bibliography.
"""

from __future__ import annotations

from collections import Counter

from pybtex.plugin import register_plugin
from pybtex.richtext import Text
from pybtex.style.formatting.unsrt import Style as UnsrtStyle
from pybtex.style.labels import BaseLabelStyle


def _plain(latex: str) -> str:
    """LaTeX of a bib field as plain text (``Sz{\\'e}kely`` -> ``Székely``)."""
    return Text.from_latex(latex).render_as("text")


def author_year(entry) -> str:
    """One entry's label: first surname (the second's, or "et al."), then the year."""
    persons = entry.persons.get("author") or entry.persons.get("editor") or []
    names = [_plain(" ".join(p.prelast_names + p.last_names)) for p in persons]
    if not names:
        who = _plain(entry.fields.get("organization", entry.key))
    elif len(names) == 1:
        who = names[0]
    elif len(names) == 2:
        who = f"{names[0]} and {names[1]}"
    else:
        who = f"{names[0]} et al."
    return f"{who}, {entry.fields.get('year', 'n.d.')}"


class AuthorYearLabels(BaseLabelStyle):
    """Author-year labels, made unique with a, b, ... in the bibliography's order."""

    def format_labels(self, sorted_entries):
        entries = list(sorted_entries)
        labels = [author_year(e) for e in entries]
        shared = {label for label, n in Counter(labels).items() if n > 1}
        seen: Counter = Counter()
        for label in labels:
            if label in shared:
                yield label + "abcdefghijklmnopqrstuvwxyz"[seen[label]]
                seen[label] += 1
            else:
                yield label


class AuthorYearStyle(UnsrtStyle):
    """``unsrt`` entries, sorted by author and year, with :class:`AuthorYearLabels`."""

    default_label_style = "varbook_author_year"
    default_sorting_style = "author_year_title"


def setup(app):
    register_plugin("pybtex.style.labels", "varbook_author_year", AuthorYearLabels)
    register_plugin("pybtex.style.formatting", "varbook", AuthorYearStyle)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
