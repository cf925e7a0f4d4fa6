"""The report page of any results files: their sections as one plain structure that the HTML
and Markdown templates fill (figures drawn once, as PNG)."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from misalign.inference.analysis import AnalysisResults
from misalign.inference.sections import Number, Section, Sentence, plain

from .figures import png_bytes, release, render
from .tables import cells, headers, numeric


@dataclass
class Figure:
    png: bytes
    caption: str
    alt: str
    name: str  # a file name for writers that keep figures beside the page

    @property
    def data_uri(self) -> str:
        return "data:image/png;base64," + base64.b64encode(self.png).decode("ascii")


@dataclass
class Part:
    """One results file's contribution."""

    title: str
    anchor: str
    headline: list[dict[str, Any]]
    headline_text: str
    sections: list[dict[str, Any]] = field(default_factory=list)


def sentence(parts: Sentence) -> list[dict[str, Any]]:
    out = []
    for p in parts:
        if isinstance(p, Number):
            out.append({"number": True, "text": p.text(), "key": p.key, "mean": repr(p.mean),
                        "lower": repr(p.lower), "upper": repr(p.upper)})
        else:
            out.append({"number": False, "text": p})
    return out


def _section(sec: Section, prefix: str, count: list[int]) -> dict[str, Any]:
    figures = []
    for spec in sec.figures:
        fig = render(spec)
        count[0] += 1
        figures.append(Figure(png_bytes(fig), spec.caption, spec.alt,
                              f"{prefix}-figure-{count[0]}.png"))
        release(fig)
    tables = [{"key": t.key, "title": t.title, "caption": t.caption, "headers": headers(t),
               "n_labels": len(t.labels), "numeric": numeric(t), "rows": cells(t)}
              for t in sec.tables]
    return {"key": sec.key, "title": sec.title, "anchor": f"{prefix}-{sec.key}",
            "headline": sentence(sec.headline), "text": sec.text, "tables": tables,
            "figures": figures}


def build_parts(results: list[tuple[str, AnalysisResults]]) -> list[Part]:
    parts, count = [], [0]
    for i, (label, res) in enumerate(results):
        anchor = f"r{i + 1}"
        main = next((s for s in res.sections() if s.headline), None)
        part = Part(title=f"{label} ({res.kind})", anchor=anchor,
                    headline=sentence(main.headline) if main else [],
                    headline_text=plain(main.headline) if main else "")
        part.sections = [_section(s, anchor, count) for s in res.report_sections()]
        parts.append(part)
    return parts


def context(results: list[tuple[str, AnalysisResults]], command: str) -> dict[str, Any]:
    from misalign import __version__

    return {"parts": build_parts(results), "command": command, "version": __version__,
            "created": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")}
