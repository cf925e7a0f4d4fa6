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
from .sections import Section, TableSpec
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
        shares = xr.Dataset({"superpopulation": sp / sp.sum("component"),
                             "finite_population": fp / fp.sum("component")})
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
        notes = list(self.model.ratings.notes)
        miss = {k: v for k, v in self.model.ratings.missing.items() if v}
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

    def sections(self) -> list[Section]:
        components = TableSpec(
            key="components", title="G-study: variance components (posterior mean [94% HDI])",
            frame=self.table, labels=["dimension", "component"],
            intervals={"variance": "variance", "share (superpopulation)": "super",
                       "share (finite population)": "finite"}, group_by="dimension")
        decisions = TableSpec(
            key="decision_study", title="Decision study (posterior mean [94% HDI])",
            frame=self.decision_table(), labels=["dimension"],
            values={"lessons n": "n_lessons", "segments m": "n_segments", "raters r": "n_raters"},
            intervals={"generalizability Eρ²": "generalizability",
                       "dependability Φ": "dependability"}, group_by="dimension",
            caption="a teacher's score over n lessons × m segments, each scored by r raters")
        smallest = TableSpec(
            key="smallest_design", title="smallest reaching 0.8: lessons × segments × raters",
            frame=self._smallest_frame(), labels=["dimension"],
            values={"generalizability Eρ²": "generalizability",
                    "dependability Φ": "dependability"})
        return [Section("gstudy", "Expert reliability: G-study and decision study",
                        tables=[components, decisions, smallest])]


def fit_gstudy(ratings: ExpertRatings, facets: tuple[str, ...] = (), likelihood: str = "gaussian",
               correlated: bool = False, priors: dict | None = None,
               sampling: SamplerConfig | None = None, **sampler: Any) -> GStudyResults:
    return GStudyResults.fit(ratings, facets=facets, likelihood=likelihood,
                             correlated=correlated, priors=priors, sampling=sampling, **sampler)


def load_gstudy(path) -> GStudyResults:
    """Rebuild the model (data, priors, options) and the results from a file."""
    return GStudyResults.load(path)
