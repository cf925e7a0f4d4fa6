"""Tables of any analysis (``TableSpec``) for the terminal (rich) and Markdown: label columns,
then intervals shown as ``mean [lower, upper]``, then plain values."""

from __future__ import annotations

from typing import Any

import pandas as pd
from rich.console import Group
from rich.table import Table
from rich.text import Text

from misalign.inference.sections import TableSpec


def interval(row: pd.Series | dict, prefix: str, digits: int = 3) -> str:
    m, lo, hi = (row[f"{prefix}_{k}"] for k in ("mean", "lower", "upper"))
    return f"{m:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"


def _value(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.3f}"
    return str(v)


def headers(spec: TableSpec) -> list[str]:
    return ([spec.headers.get(c, c) for c in spec.labels] + list(spec.intervals)
            + list(spec.values))


def numeric(spec: TableSpec) -> list[bool]:
    """Per shown column: whether it holds numbers (right-aligned)."""
    return ([False] * len(spec.labels) + [True] * len(spec.intervals)
            + [pd.api.types.is_numeric_dtype(spec.frame[c]) for c in spec.values.values()])


def cells(spec: TableSpec) -> list[tuple[list[str], bool, bool]]:
    """Per row: the shown cells, whether it is emphasised, and whether a rule precedes it."""
    out, last = [], None
    for row in spec.frame.to_dict("records"):  # (iterrows would make an int column float)
        shown = ([str(row[c]) for c in spec.labels]
                 + [interval(row, p) for p in spec.intervals.values()]
                 + [_value(row[c]) for c in spec.values.values()])
        bold = spec.emphasis is not None and row[spec.emphasis[0]] == spec.emphasis[1]
        group = row[spec.group_by] if spec.group_by else None
        out.append((shown, bold, last is not None and group != last))
        last = group
    return out


def to_rich(spec: TableSpec) -> Group:
    """The title as its own line (a table title wraps at the table's width), then the
    table."""
    t = Table()
    rows = cells(spec)
    for i, (h, num) in enumerate(zip(headers(spec), numeric(spec), strict=True)):
        # On a narrow screen the numbers wrap and a label keeps at least 7 characters and at
        # most 28 (with every column unwrappable rich shrank the first one to nothing).
        label = i < len(spec.labels)
        wide = max([len(r[0][i]) for r in rows] + [len(h)]) if label else None
        t.add_column(h, justify="right" if num else "left", no_wrap=label,
                     min_width=min(wide, 7) if label else None,
                     max_width=28 if label else None)
    for shown, bold, rule in rows:
        if rule:
            t.add_section()
        t.add_row(*shown, style="bold" if bold else None)
    parts = [Text(spec.title, style="bold"), t]
    if spec.caption:  # below the table, wrapped at the screen's width, not the table's
        parts.append(Text(spec.caption, style="dim"))
    return Group(*parts)


def to_markdown(spec: TableSpec) -> str:
    hs = headers(spec)
    n_labels = len(spec.labels)
    lines = [f"**{spec.title}**", "", "| " + " | ".join(hs) + " |",
             "|" + "|".join("---:" if num else "---" for num in numeric(spec)) + "|"]
    for shown, bold, _ in cells(spec):
        shown = [f"**{c}**" if bold and i < n_labels else c for i, c in enumerate(shown)]
        lines.append("| " + " | ".join(shown) + " |")
    if spec.caption:
        lines += ["", spec.caption]
    return "\n".join(lines) + "\n"
