"""``misalign report``: one page (HTML or Markdown) from any results files."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Annotated

import typer

from misalign.cli_common import choices, err, fail, load_or_fail, out

ReportFormat = choices("ReportFormat", "html", "md")


def report(
    results: Annotated[list[Path], typer.Argument(help=(
        "Results files written by misalign (fit, gstudy, …), in the order to show them."))],
    out_path: Annotated[Path | None, typer.Option("--out", help=(
        "The page to write (default: report.html, or report.md with --format md)."))] = None,
    fmt: Annotated[ReportFormat, typer.Option("--format", help=(
        "html: one self-contained page (figures inline, nothing fetched; opens from a file or "
        "an e-mail attachment); md: Markdown with the figures in a folder beside it."))
    ] = ReportFormat["html"],
) -> None:
    """Write the report a researcher reads: headlines, tables, figures, diagnostics,
    provenance."""
    import warnings

    from misalign.reports.html import write_report

    loaded = [(p.name, load_or_fail(p)) for p in results]
    target = out_path or Path(f"report.{fmt.value}")
    err.print(f"drawing the report of {len(loaded)} results file(s)…", markup=False)
    command = "misalign " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            written = write_report(loaded, target, fmt.value, command)
    except OSError as exc:
        raise fail(f"error: cannot write {target}: {exc}") from None
    out.print(f"report: {written}", markup=False, highlight=False)


def register(app: typer.Typer) -> None:
    app.command()(report)
