"""G-study report: the component table and the decision-study table (rich and Markdown)."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
from rich.table import Table


@dataclass
class GStudyReport:
    components: pd.DataFrame
    decisions: pd.DataFrame
    smallest: dict[str, dict]
    gate: str
    notes: list[str]

    @classmethod
    def from_results(cls, res) -> GStudyReport:
        notes = list(res.model.ratings.notes)
        miss = {k: v for k, v in res.model.ratings.missing.items() if v}
        if miss:
            notes.append("missing scores (left out): " + ", ".join(f"{k} {v}" for k, v in
                                                                  miss.items()))
        return cls(res.table(), res.decision_table(), res.smallest_designs(),
                   res.gate.message(), notes)

    def to_dict(self) -> dict:
        return {"components": self.components.to_dict("records"),
                "decision_study": self.decisions.to_dict("records"),
                "smallest_design_reaching_0.8": self.smallest, "gate": self.gate,
                "notes": self.notes}


def _ci(m: float, lo: float, hi: float) -> str:
    return f"{m:.3f} [{lo:.3f}, {hi:.3f}]"


def components_table(r: GStudyReport) -> Table:
    t = Table(title="G-study: variance components (posterior mean [94% HDI])")
    for c in ("dimension", "component", "variance", "share (superpopulation)",
              "share (finite population)"):
        t.add_column(c, justify="left" if c in ("dimension", "component") else "right")
    last = None
    for row in r.components.itertuples(index=False):
        if last is not None and row.dimension != last:
            t.add_section()
        last = row.dimension
        t.add_row(row.dimension, row.component,
                  _ci(row.variance, row.variance_lower, row.variance_upper),
                  _ci(row.super_mean, row.super_lower, row.super_upper),
                  _ci(row.finite_mean, row.finite_lower, row.finite_upper))
    return t


def _design(b: dict | None) -> str:
    if b is None:
        return "none in the grid"
    return f"{b['n_lessons']} × {b['n_segments']} × {b['n_raters']} ({b['value']:.3f})"


def decision_table(r: GStudyReport) -> Table:
    t = Table(title="Decision study (posterior mean [94% HDI])",
              caption="a teacher's score over n lessons × m segments, each scored by r raters")
    for c in ("dimension", "n × m × r", "generalizability Eρ²", "dependability Φ"):
        t.add_column(c, justify="left" if c == "dimension" else "right")
    last = None
    for row in r.decisions.itertuples(index=False):
        if last is not None and row.dimension != last:
            t.add_section()
        last = row.dimension
        t.add_row(row.dimension, f"{row.n_lessons} × {row.n_segments} × {row.n_raters}",
                  _ci(row.generalizability_mean, row.generalizability_lower,
                      row.generalizability_upper),
                  _ci(row.dependability_mean, row.dependability_lower,
                      row.dependability_upper))
    t.add_section()
    for dim, best in r.smallest.items():
        g, d = best["generalizability"], best["dependability"]
        t.add_row(dim, "smallest reaching 0.8", _design(g), _design(d))
    return t


def to_markdown(r: GStudyReport) -> str:
    lines = ["| dimension | component | variance | share (super) | share (finite) |",
             "|---|---|---:|---:|---:|"]
    for row in r.components.itertuples(index=False):
        lines.append(f"| {row.dimension} | {row.component} | "
                     f"{_ci(row.variance, row.variance_lower, row.variance_upper)} | "
                     f"{_ci(row.super_mean, row.super_lower, row.super_upper)} | "
                     f"{_ci(row.finite_mean, row.finite_lower, row.finite_upper)} |")
    return "\n".join(lines) + "\n"
