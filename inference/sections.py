"""Report data: what an analysis has to say, as plain objects that the writers in
``misalign.reports`` (terminal, Markdown, JSON, HTML) render without knowing the analysis.

An analysis contributes ``Section`` s; each holds a headline (plain words with ``Number`` s in
them, so the HTML page can mark each number and the terminal can print the same sentence),
sentences, tables of numbers (``TableSpec``: the numbers themselves plus how to show them) and
figures (``FigureSpec``: a named plot kind from ``misalign.reports.figures`` and the data it
draws, with a caption and alt text).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd


@dataclass(frozen=True)
class Number:
    """A reported quantity inside a sentence: posterior mean and 94% HDI."""

    key: str  # what it is, e.g. "attributable" (the HTML page marks it with this)
    mean: float
    lower: float
    upper: float
    style: str = "percent"  # percent: 14% [13–16%]; decimal: 0.62 [0.55–0.70]; signed: +0.28

    def text(self) -> str:
        if self.style == "percent":
            return (f"{100 * self.mean:.0f}% [{100 * self.lower:.0f}–"
                    f"{100 * self.upper:.0f}%]")
        if self.style == "signed":  # a dash would read as a minus sign
            return f"{self.mean:+.2f} [{self.lower:+.2f} to {self.upper:+.2f}]"
        return f"{self.mean:.2f} [{self.lower:.2f}–{self.upper:.2f}]"


Sentence = list[str | Number]


def plain(sentence: Sentence) -> str:
    """The sentence as the terminal prints it."""
    return "".join(p if isinstance(p, str) else p.text() for p in sentence)


@dataclass
class TableSpec:
    key: str  # stable name: the JSON key and the HTML id
    title: str
    frame: pd.DataFrame  # the numbers (what --json prints)
    labels: list[str]  # label columns, shown first (their headers: ``headers``)
    # header → column prefix: ``{prefix}_mean/_lower/_upper`` shown as "mean [lower, upper]"
    intervals: dict[str, str] = field(default_factory=dict)
    values: dict[str, str] = field(default_factory=dict)  # header → a plain column
    headers: dict[str, str] = field(default_factory=dict)  # label column → its header
    group_by: str | None = None  # a rule between runs of equal values in this column
    emphasis: tuple[str, Any] | None = None  # (column, value): those rows are shown in bold
    caption: str = ""


@dataclass
class FigureSpec:
    kind: str  # a plot in misalign.reports.figures
    data: Any
    caption: str
    alt: str
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class Section:
    key: str
    title: str
    text: list[str] = field(default_factory=list)
    tables: list[TableSpec] = field(default_factory=list)
    figures: list[FigureSpec] = field(default_factory=list)
    headline: Sentence = field(default_factory=list)
    summary: bool = True  # part of the terminal summary (else only in full reports)
