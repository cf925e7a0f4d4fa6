"""E1 on the analysis frame: the variance partition of misalignment error, its shares, gate,
report section and results file (posterior, sample stats, data, config, priors, versions, data
hash, seed, plus the groups ``shares`` and ``diagnostics``)."""

from __future__ import annotations

from functools import cached_property
from typing import Any

import pandas as pd
import xarray as xr

from misalign.data import MisalignmentData
from misalign.models import VariancePartitionModel
from misalign.models.options import SamplerConfig

from . import e1_sections
from .analysis import AnalysisResults
from .sections import Section
from .shares import SHARE_VARS, compute_shares, share_table

NU_WARN = 4.0


class E1Results(AnalysisResults):
    model_class = VariancePartitionModel
    derived_groups = ("shares",)
    model: VariancePartitionModel

    @classmethod
    def compute_derived(cls, model: VariancePartitionModel) -> dict[str, xr.Dataset]:
        return {"shares": compute_shares(model)}

    @property
    def shares(self) -> xr.Dataset:
        return self.derived["shares"]

    def gate_variables(self) -> xr.Dataset:
        return self.shares[list(SHARE_VARS)]

    @cached_property
    def table(self) -> pd.DataFrame:
        """One row per component and aggregate: finite- and superpopulation shares, 94% HDIs."""
        return share_table(self.shares)

    @property
    def notes(self) -> list[str]:
        notes = super().notes
        m = self.model
        post = m.idata["posterior"] if m.idata is not None else None
        if m.likelihood == "student" and post is not None and "nu_minus_2" in post:
            nu = 2.0 + float(post["nu_minus_2"].median())
            if nu < NU_WARN:
                notes.append(
                    f"Student-t ν ≈ {nu:.2f}: the residual variance σ²ν/(ν−2) is dominated by "
                    "the tails and so is the residual share. Rounded ordinal scores often do "
                    "this (many identical residuals plus a few large ones); prefer --likelihood "
                    "gaussian for the variance partition and use student to check robustness "
                    "to outliers.")
        return notes

    def quantities(self) -> pd.DataFrame:
        t = self.table[self.table["kind"] == "aggregate"]
        return pd.DataFrame({"quantity": t["name"], "mean": t["super_mean"],
                             "lower": t["super_lower"], "upper": t["super_upper"],
                             "finite_mean": t["finite_mean"]}).reset_index(drop=True)

    def sections(self) -> list[Section]:
        return e1_sections.sections(self)


def fit_e1(data: MisalignmentData, likelihood: str = "gaussian",
           priors: dict[str, Any] | None = None, sampling: SamplerConfig | None = None,
           **sampler: Any) -> E1Results:
    """Build, sample, compute the shares and run the diagnostics gate."""
    return E1Results.fit(data, likelihood=likelihood, priors=priors, sampling=sampling,
                         **sampler)


def load_results(path) -> E1Results:
    """Read an E1 results file: the rebuilt model with its posterior, the shares and the gate."""
    return E1Results.load(path)
