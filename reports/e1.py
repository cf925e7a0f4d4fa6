"""The E1 report: a data object built from results, and writers for the terminal, JSON, Markdown."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import pandas as pd


@dataclass
class E1Report:
    table: pd.DataFrame  # kind, name, finite_*, super_* (mean, lower, upper)
    gate_passed: bool
    gate_message: str
    data: dict[str, Any]
    config: dict[str, Any]
    fit: dict[str, Any]
    notes: list[str] = field(default_factory=list)

    @classmethod
    def from_results(cls, results) -> E1Report:
        cfg = results.model.config
        return cls(table=results.table, gate_passed=results.gate.passed,
                   gate_message=results.gate.message(), data=results.model.data.summary(),
                   config=cfg, fit=dict(results.model.fit_config), notes=list(results.notes))

    def to_dict(self) -> dict[str, Any]:
        return {"data": self.data, "config": self.config, "fit": self.fit,
                "gate": {"passed": self.gate_passed, "message": self.gate_message},
                "notes": self.notes, "shares": self.table.to_dict(orient="records")}


def to_json(report: E1Report) -> str:
    return json.dumps(report.to_dict(), indent=2, default=str)


def _interval(row: pd.Series, kind: str) -> tuple[str, str]:
    return (f"{row[f'{kind}_mean']:.3f}",
            f"[{row[f'{kind}_lower']:.3f}, {row[f'{kind}_upper']:.3f}]")


def to_rich_table(report: E1Report):
    from rich.table import Table

    t = Table(title=f"E1 variance partition of misalignment error ({report.config['error_scale']}"
                    f" scale, {report.config['likelihood']} likelihood)", title_justify="left")
    t.add_column("component", no_wrap=True)
    t.add_column("finite-pop share [94% HDI]", justify="right", no_wrap=True)
    t.add_column("superpop share [94% HDI]", justify="right", no_wrap=True)
    for kind in ("component", "aggregate"):
        rows = report.table[report.table["kind"] == kind]
        for i, (_, row) in enumerate(rows.iterrows()):
            name = row["name"] if kind == "component" else f"[bold]{row['name']}[/bold]"
            t.add_row(name, " ".join(_interval(row, "finite")), " ".join(_interval(row, "super")),
                      end_section=(kind == "component" and i == len(rows) - 1))
    return t


def to_markdown(report: E1Report) -> str:
    lines = ["| component | finite-pop share | 94% HDI | superpop share | 94% HDI |",
             "|---|---:|---:|---:|---:|"]
    for _, row in report.table.iterrows():
        name = row["name"] if row["kind"] == "component" else f"**{row['name']}**"
        lines.append(f"| {name} | " + " | ".join([*_interval(row, "finite"),
                                                  *_interval(row, "super")]) + " |")
    return "\n".join(lines)
