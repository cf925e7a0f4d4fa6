"""The terminal and Markdown summaries of any analysis: its sections' tables, then its notes
and the diagnostics gate."""

from __future__ import annotations

from rich.console import Console

from misalign.inference.analysis import AnalysisResults

from .tables import to_markdown, to_rich


def print_summary(results: AnalysisResults, out: Console, err: Console,
                  footer: str | None = None) -> None:
    """Tables on ``out``; notes and the gate on ``err`` (plain lines, never re-wrapped); then
    ``footer`` and, last, the headline sentence the report opens with."""
    for section in results.sections():
        if not section.summary:
            continue
        for line in section.text:
            out.print(line, markup=False, highlight=False)
        for table in section.tables:
            out.print(to_rich(table))
    for note in dict.fromkeys(results.notes):
        err.print(f"note: {note}", markup=False, highlight=False)
    err.print(results.gate.message(), markup=False, highlight=False)
    if footer:
        out.print(footer, markup=False, highlight=False)
    if results.headline:
        out.print(results.headline, markup=False, highlight=False, soft_wrap=True)


def summary_markdown(results: AnalysisResults) -> str:
    parts = []
    for section in results.sections():
        parts.append(f"## {section.title}\n")
        parts += [line + "\n" for line in section.text]
        parts += [to_markdown(t) for t in section.tables]
    return "\n".join(parts)
