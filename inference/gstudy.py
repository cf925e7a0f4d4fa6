"""The G-study on the analysis frame: variance shares per dimension, the decision study, the
noise ceiling, the gate and the results file (groups ``shares``, ``variances``,
``decision_study`` beside the posterior and the expert data)."""

from __future__ import annotations

from functools import cached_property
from typing import Any

import pandas as pd
import xarray as xr

from misalign.data.experts import ExpertRatings
from misalign.models.base import SAMPLE_DIMS
from misalign.models.gstudy import GStudyModel
from misalign.models.options import SamplerConfig

from .analysis import AnalysisResults
from .reliability import decision_study, noise_ceiling, smallest_design
from .sections import FigureSpec, Number, Section, Sentence, TableSpec
from .summaries import HDI_PROB, hdi, interval_frame

SHOWN_DESIGNS = ((1, 4, 1), (2, 4, 1), (4, 4, 1), (4, 4, 2), (8, 4, 1))
COEFFICIENTS = ("generalizability", "dependability")


class GStudyResults(AnalysisResults):
    model_class = GStudyModel
    derived_groups = ("shares", "variances", "decision_study")
    model: GStudyModel

    @classmethod
    def compute_derived(cls, model: GStudyModel) -> dict[str, xr.Dataset]:
        sp, fp = model.variances(finite=False), model.variances(finite=True)
        order = ("chain", "draw", "dimension", "component")
        shares = xr.Dataset({"superpopulation": (sp / sp.sum("component")).transpose(*order),
                             "finite_population": (fp / fp.sum("component")).transpose(*order)})
        ds = decision_study(sp)
        summary = xr.Dataset()
        for k in ds.data_vars:
            h = hdi(ds[k])
            summary[f"{k}_mean"] = ds[k].mean(SAMPLE_DIMS)
            summary[f"{k}_lower"] = h.sel(ci_bound="lower", drop=True)
            summary[f"{k}_upper"] = h.sel(ci_bound="upper", drop=True)
        return {"shares": shares, "variances": sp.to_dataset(name="variance"),
                "decision_study": summary}

    @property
    def variances(self) -> xr.DataArray:
        """Draws of each component's variance on the score scale (chain, draw, dimension,
        component)."""
        return self.derived["variances"]["variance"]

    @property
    def shares(self) -> xr.Dataset:
        return self.derived["shares"]

    @property
    def dstudy(self) -> xr.Dataset:
        return self.derived["decision_study"]

    @property
    def dimensions(self) -> list[str]:
        return list(self.variances["dimension"].values)

    def gate_variables(self) -> xr.Dataset:
        return self.shares

    @property
    def notes(self) -> list[str]:
        r = self.model.ratings
        notes = list(r.notes) + [n for f in self.model.facets for n in r.facet_notes.get(f, [])]
        miss = {k: v for k, v in r.missing.items() if v}
        if miss:
            notes.append("missing scores (left out): " + ", ".join(f"{k} {v}" for k, v in
                                                                  miss.items()))
        return notes

    @cached_property
    def table(self) -> pd.DataFrame:
        """One row per dimension × component: variance and both shares with HDIs."""
        return interval_frame({"variance": self.variances,
                               "super": self.shares["superpopulation"],
                               "finite": self.shares["finite_population"]}, HDI_PROB)

    def decision_table(self, designs=SHOWN_DESIGNS) -> pd.DataFrame:
        rows = []
        for d in self.dimensions:
            for n, m, r in designs:
                sel = {"dimension": d, "n_lessons": n, "n_segments": m, "n_raters": r}
                row = {"dimension": d, "n_lessons": n, "n_segments": m, "n_raters": r}
                for k in COEFFICIENTS:
                    for stat in ("mean", "lower", "upper"):
                        row[f"{k}_{stat}"] = float(self.dstudy[f"{k}_{stat}"].sel(sel))
                # One rater per segment in the data: σ²_e cannot be split (reliability.py).
                row["note"] = "upper bound (r > 1)" if r > 1 else ""
                rows.append(row)
        return pd.DataFrame(rows)

    def smallest_designs(self, target: float = 0.8) -> dict[str, dict]:
        return {d: {k: smallest_design(self.dstudy[f"{k}_mean"].sel(dimension=d), target)
                    for k in COEFFICIENTS} for d in self.dimensions}

    def noise_ceiling(self, level: str, dimension: str, n_raters: int = 1, n_segments: int = 4,
                      n_lessons: int = 4) -> xr.DataArray:
        """Draws of the ceiling on any rater's correlation with the expert reference."""
        return noise_ceiling(self.variances.sel(dimension=dimension), level, n_raters,
                             n_segments, n_lessons)

    def quantities(self) -> pd.DataFrame:
        t = self.table
        return pd.DataFrame({"quantity": t["dimension"] + "/" + t["component"],
                             "mean": t["super_mean"], "lower": t["super_lower"],
                             "upper": t["super_upper"], "finite_mean": t["finite_mean"]})

    def _smallest_frame(self, target: float = 0.8) -> pd.DataFrame:
        rows = []
        for dim, best in self.smallest_designs(target).items():
            row: dict[str, Any] = {"dimension": dim}
            for k, b in best.items():
                row[k] = ("none in the grid" if b is None else
                          f"{b['n_lessons']} × {b['n_segments']} × {b['n_raters']} "
                          f"({b['value']:.3f})")
            rows.append(row)
        return pd.DataFrame(rows)

    def headline_sentence(self, shown: int = 3) -> Sentence:
        """Per dimension (the first ``shown``): what a single rating is made of, and the
        generalizability of a teacher score from 4 lessons × 4 segments × 1 rater."""
        t = self.table
        parts: Sentence = []
        for dim in self.dimensions[:shown]:
            rows = t[t["dimension"] == dim]
            parts.append(f"A single {dim} rating is ")
            for i, r in enumerate(rows.itertuples(index=False)):
                sep = ", " if i < len(rows) - 2 else (" and " if i == len(rows) - 2 else "")
                parts += [Number(f"{dim}/{r.component}", r.super_mean, r.super_lower,
                                 r.super_upper), f" {r.component}{sep}"]
            sel = {"dimension": dim, "n_lessons": 4, "n_segments": 4, "n_raters": 1}
            g = Number(f"{dim}/generalizability",
                       *(float(self.dstudy[f"generalizability_{k}"].sel(sel))
                         for k in ("mean", "lower", "upper")), style="decimal")
            parts += ["; a teacher score from 4 lessons × 4 segments × 1 rater has "
                      "generalizability ", g, ". "]
        if len(self.dimensions) > shown:
            parts.append(f"({len(self.dimensions) - shown} more dimensions in the table.)")
        return parts

    def sections(self) -> list[Section]:
        components = TableSpec(
            key="components", title="G-study: variance components (posterior mean [94% HDI])",
            frame=self.table, labels=["dimension", "component"],
            intervals={"variance": "variance", "share (superpopulation)": "super",
                       "share (finite population)": "finite"}, group_by="dimension")
        decisions = TableSpec(
            key="decision_study", title="Decision study (posterior mean [94% HDI])",
            frame=self.decision_table(), labels=["dimension"],
            values={"lessons n": "n_lessons", "segments m": "n_segments", "raters r": "n_raters",
                    "note": "note"},
            intervals={"generalizability Eρ²": "generalizability",
                       "dependability Φ": "dependability"}, group_by="dimension",
            caption=("a teacher's score over n lessons × m segments, each scored by the same r "
                     "raters. With one rater per segment in the data the residual cannot be "
                     "split into segment and rater × segment parts, so values at r > 1 are "
                     "upper bounds."))
        grid = {k: int(self.dstudy[k].max()) for k in ("n_lessons", "n_segments", "n_raters")}
        smallest = TableSpec(
            key="smallest_design",
            title=(f"smallest design reaching 0.8 (n lessons × m segments × r raters; searched "
                   f"up to {grid['n_lessons']} × {grid['n_segments']} × {grid['n_raters']})"),
            frame=self._smallest_frame(), labels=["dimension"],
            values={"generalizability Eρ²": "generalizability",
                    "dependability Φ": "dependability"})
        forest = FigureSpec(
            "forest", xr.Dataset({"share": self.shares["superpopulation"]}),
            caption="Share of each variance component in a single expert rating, per "
                    "dimension: posterior mean and 94% HDI.",
            alt="Forest plot of the teacher, lesson, rater and residual shares of every "
                "dimension, with 94% intervals.")
        curves = FigureSpec(
            "decision", self.dstudy,
            caption="Generalizability of a teacher score against the number of lessons "
                    "(4 segments each, 1 and 2 raters), with 94% HDI bands; dashed: 0.8.",
            alt="Line chart per dimension: generalizability rises with the number of lessons "
                "and levels off below 1; a second line for two raters.")
        return [Section("gstudy", "Expert reliability: G-study and decision study",
                        headline=self.headline_sentence(), tables=[components, decisions, smallest],
                        figures=[forest, curves])]


def fit_gstudy(ratings: ExpertRatings, facets: tuple[str, ...] = (), likelihood: str = "gaussian",
               correlated: bool = False, priors: dict | None = None,
               sampling: SamplerConfig | None = None, **sampler: Any) -> GStudyResults:
    return GStudyResults.fit(ratings, facets=facets, likelihood=likelihood,
                             correlated=correlated, priors=priors, sampling=sampling, **sampler)


def load_gstudy(path) -> GStudyResults:
    """Rebuild the model (data, priors, options) and the results from a file."""
    return GStudyResults.load(path)
