"""Bibliography styles for the book: author-year citations in round brackets, and matching labels.

sphinxcontrib-bibtex's `author_year` style writes "[Devlin et al., 2019]" and "Devlin et al. [2019]";
the book writes "(Devlin et al., 2019)" and "Devlin et al. (2019)". `author_year_round` (for
`bibtex_reference_style`) is that style with round brackets, as sphinxcontrib-bibtex's documentation
shows. pybtex's "plain" style labels the References list [1], [2], ...; `author_year_plain` (for
`bibtex_default_style`) is "plain" with labels "Devlin et al., 2019".
"""
from __future__ import annotations

from dataclasses import dataclass, field

import sphinxcontrib.bibtex.plugin
from pybtex.plugin import register_plugin
from pybtex.style.formatting.plain import Style as PlainStyle
from pybtex.style.labels import BaseLabelStyle
from sphinxcontrib.bibtex.style.referencing import BracketStyle
from sphinxcontrib.bibtex.style.referencing.author_year import AuthorYearReferenceStyle


def _round() -> BracketStyle:
    return BracketStyle(left="(", right=")")


@dataclass
class AuthorYearRoundStyle(AuthorYearReferenceStyle):
    """sphinxcontrib-bibtex's author_year reference style with round brackets."""

    bracket_parenthetical: BracketStyle = field(default_factory=_round)
    bracket_textual: BracketStyle = field(default_factory=_round)
    bracket_author: BracketStyle = field(default_factory=_round)
    bracket_label: BracketStyle = field(default_factory=_round)
    bracket_year: BracketStyle = field(default_factory=_round)


def _last_name(person) -> str:
    return " ".join(person.last_names).replace("{", "").replace("}", "")


class AuthorYearLabels(BaseLabelStyle):
    """Labels "Ba et al., 2016", "Hendrycks and Gimpel, 2016", "Vig, 2019"."""

    def format_labels(self, sorted_entries):
        for entry in sorted_entries:
            people = entry.persons.get("author") or entry.persons.get("editor") or []
            if len(people) > 2 or any(_last_name(p) == "others" for p in people):
                who = f"{_last_name(people[0])} et al."
            else:
                who = " and ".join(_last_name(p) for p in people)
            yield f"{who}, {entry.fields.get('year', 'n.d.')}"


class AuthorYearPlainStyle(PlainStyle):
    default_label_style = "author_year"


def setup(app) -> dict:
    register_plugin("pybtex.style.labels", "author_year", AuthorYearLabels, force=True)
    register_plugin("pybtex.style.formatting", "author_year_plain", AuthorYearPlainStyle, force=True)
    sphinxcontrib.bibtex.plugin.register_plugin(
        "sphinxcontrib.bibtex.style.referencing", "author_year_round", AuthorYearRoundStyle, force=True
    )
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
