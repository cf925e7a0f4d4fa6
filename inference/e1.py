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
from .bias import compute_bias, size_table
from .dstudy import decision_table, e1_decision_study
from .sections import Section
from .shares import SHARE_VARS, compute_shares, share_table

NU_WARN = 4.0


class E1Results(AnalysisResults):
    model_class = VariancePartitionModel
    derived_groups = ("shares", "bias", "decision_study")
    model: VariancePartitionModel

    @classmethod
    def compute_derived(cls, model: VariancePartitionModel) -> dict[str, xr.Dataset]:
        shares = compute_shares(model)
        return {"shares": shares, "bias": compute_bias(model, model.posterior, shares),
                "decision_study": e1_decision_study(model.spec.coords, shares)}

    @property
    def shares(self) -> xr.Dataset:
        return self.derived["shares"]

    @property
    def decision_study(self) -> xr.Dataset:
        """E5: the error of an average over k LLMs × q prompts, per draw (``dstudy.py``)."""
        return self.derived["decision_study"]

    @cached_property
    def decision_table(self) -> pd.DataFrame:
        """Posterior mean [94% HDI] of the error variance of a few averages, both versions,
        and the share of it the floor is."""
        return decision_table(self.decision_study)

    @property
    def bias(self) -> xr.Dataset:
        """Overall bias, bias per task, total error SD and every LLM's, prompt's and
        LLM × prompt's bias, per draw (``inference/bias.py``)."""
        return self.derived["bias"]

    def gate_variables(self) -> xr.Dataset:
        return xr.Dataset({v: self.shares[v] for v in SHARE_VARS} | dict(self.bias.data_vars))

    def sensitivity_quantities(self) -> xr.Dataset:
        """Every reported share and aggregate (``share:llm (superpop)``, ``aggregate:shared
        (finite)``, …), the overall bias and the total error SD, as scalars per draw."""
        out = {}
        for kind, short in (("superpopulation", "superpop"), ("finite_population", "finite")):
            for dim, var, prefix in (("aggregate", f"{kind}_aggregate", "aggregate"),
                                     ("component", kind, "share")):
                da = self.shares[var]
                for name in da[dim].values.tolist():
                    out[f"{prefix}:{name} ({short})"] = da.sel({dim: name}, drop=True)
        out["overall bias"] = self.bias["overall_bias"]
        out["total error SD"] = self.bias["total_error_sd"]
        return xr.Dataset(out)

    @cached_property
    def table(self) -> pd.DataFrame:
        """One row per component and aggregate: finite- and superpopulation shares, 94% HDIs."""
        return share_table(self.shares)

    @property
    def notes(self) -> list[str]:
        notes = super().notes
        t = self.table if "shares" in self.derived else {}
        if "mostly_prior" in t:
            flagged = t[(t["kind"] == "aggregate") & t["mostly_prior"].astype(bool)]["name"]
            if len(flagged):
                notes.append(
                    f"superpopulation share mostly prior for {', '.join(flagged)} (posterior "
                    "overlaps its prior by more than half): read the finite-population "
                    "column for the LLMs and prompts in these data")
        m = self.model
        post = m.idata["posterior"] if m.idata is not None else None
        if m.likelihood == "student" and post is not None and "nu_minus_2" in post:
            nu = 2.0 + float(post["nu_minus_2"].median())
            if nu < NU_WARN:
                notes.append(
                    f"Student-t ν ≈ {nu:.2f}: the residuals are very heavy-tailed (rounded "
                    "scores often do this: many identical residuals plus a few large ones), so "
                    "σ_residual is not their SD. The residual share uses the realised mean "
                    "squared residual and stays comparable; compare with --likelihood gaussian, "
                    "the partition to read, and use student to check robustness to outliers.")
        return notes

    def quantities(self) -> pd.DataFrame:
        t = self.table[self.table["kind"] == "aggregate"]
        shares = pd.DataFrame({"quantity": t["name"], "mean": t["super_mean"],
                               "lower": t["super_lower"], "upper": t["super_upper"],
                               "finite_mean": t["finite_mean"]})
        size = size_table(self.bias)
        size = pd.DataFrame({"quantity": size["quantity"], "mean": size["value_mean"],
                             "lower": size["value_lower"], "upper": size["value_upper"],
                             "finite_mean": float("nan")})
        return pd.concat([shares, size], ignore_index=True)

    def sections(self) -> list[Section]:
        return e1_sections.sections(self)


def fit_e1(data: MisalignmentData, likelihood: str = "gaussian",
           priors: dict[str, Any] | None = None, sampling: SamplerConfig | None = None,
           prior_structure: str = "budget", **sampler: Any) -> E1Results:
    """Build, sample, compute the shares and run the diagnostics gate."""
    return E1Results.fit(data, likelihood=likelihood, priors=priors, sampling=sampling,
                         prior_structure=prior_structure, **sampler)


def load_results(path) -> E1Results:
    """Read an E1 results file: the rebuilt model with its posterior, the shares and the gate."""
    return E1Results.load(path)
