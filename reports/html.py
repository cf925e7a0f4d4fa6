"""``misalign report``: one self-contained HTML page (inline CSS, figures as data URIs,
nothing fetched), or Markdown with the figures beside it. Jinja2 templates in ``templates/``."""

from __future__ import annotations

from pathlib import Path

import jinja2

from misalign.data.atomic import atomic_write, atomic_write_text
from misalign.inference.analysis import AnalysisResults

from .page import context

FORMATS = ("html", "md")


def _environment(fmt: str) -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("misalign.reports", "templates"),
        autoescape=fmt == "html", trim_blocks=True, lstrip_blocks=True,
        undefined=jinja2.StrictUndefined)


def render_report(results: list[tuple[str, AnalysisResults]], fmt: str = "html",
                  command: str = "", figure_dir: str = "") -> tuple[str, dict]:
    """The page text, and the context it was filled from (figures included)."""
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, not {fmt!r}")
    ctx = context(results, command) | {"figure_dir": figure_dir}
    template = _environment(fmt).get_template(f"report.{fmt}.j2")
    return template.render(**ctx), ctx


def write_report(results: list[tuple[str, AnalysisResults]], out: str | Path,
                 fmt: str = "html", command: str = "") -> Path:
    """Write the report atomically; Markdown keeps its figures in ``<out stem>_files/``."""
    out = Path(out)
    text, ctx = render_report(results, fmt, command, figure_dir=f"{out.stem}_files")
    if fmt == "md":
        folder = out.parent / ctx["figure_dir"]
        for part in ctx["parts"]:
            for sec in part.sections:
                for fig in sec["figures"]:
                    atomic_write(folder / fig.name, lambda p, b=fig.png: p.write_bytes(b))
    return atomic_write_text(out, text)
