"""Variance shares of the E1 posterior: superpopulation and finite-population, per draw.

Superpopulation share of component k: σ_k² / Σ σ². Finite-population share (Gelman 2005): the
variance of the realised effects of the levels in the data instead of σ² for the crossed factors
(Σ α² / (J − 1) for a main effect, Σ γ² / ((J − 1)(K − 1)) for a two-way interaction, Σ α² /
(L − F) for llm effects within families); nested components keep σ² (thousands of levels).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr

from misalign.data.components import AGGREGATES, PARTITION
from misalign.models import EFFECTS, VariancePartitionModel
from misalign.models.base import SAMPLE_DIMS
from misalign.models.priors import SIGMA_PRIORS

from .summaries import HDI_PROB, ResultTable, interval_frame


def _variances(model: VariancePartitionModel, post: xr.Dataset, finite: bool) -> xr.DataArray:
    spec = model.spec
    out = []
    for comp in spec.components:
        s2 = post[SIGMA_PRIORS[comp]] ** 2
        if comp == "residual" and model.likelihood == "student":
            nu = 2.0 + post["nu_minus_2"]
            s2 = s2 * nu / (nu - 2.0)
        if finite and comp in EFFECTS:
            name, dims = EFFECTS[comp]
            eff = post[name]
            if comp == "llm" and spec.has_family:
                n_fam = len(spec.coords["family"])
                df = len(spec.coords["llm"]) - n_fam
            else:
                df = int(np.prod([eff.sizes[d] - 1 for d in dims]))
            s2 = (eff**2).sum(dims) / df
        out.append(s2.drop_vars([c for c in s2.coords if c not in SAMPLE_DIMS]))
    return xr.concat(out, dim=xr.DataArray(spec.components, dims="component", name="component"))


def _aggregate(shares: xr.DataArray) -> xr.DataArray:
    present = set(shares["component"].values.tolist())
    names, parts = [], []
    for agg, members in AGGREGATES.items():
        have = [m for m in members if m in present]
        if not have and agg == "family":
            continue
        names.append(agg)
        parts.append(shares.sel(component=have).sum("component") if have
                     else xr.zeros_like(shares.isel(component=0, drop=True)))
    return xr.concat(parts, dim=xr.DataArray(names, dims="aggregate", name="aggregate"))


def compute_shares(model: VariancePartitionModel, posterior: xr.Dataset | None = None
                   ) -> xr.Dataset:
    """Dataset with superpopulation/finite-population shares and aggregates, per draw."""
    post = posterior if posterior is not None else model.idata["posterior"].to_dataset()
    ds = xr.Dataset()
    for kind, finite in (("superpopulation", False), ("finite_population", True)):
        v = _variances(model, post, finite)
        share = v / v.sum("component")
        ds[kind] = share.transpose(*SAMPLE_DIMS, "component")
        ds[f"{kind}_aggregate"] = _aggregate(share).transpose(*SAMPLE_DIMS, "aggregate")
        ds[f"{kind}_variance"] = v.transpose(*SAMPLE_DIMS, "component")
    ds.attrs["hdi_prob"] = HDI_PROB
    ds.attrs["partition"] = ", ".join(PARTITION)
    return ds


SHARE_VARS = ("superpopulation", "finite_population", "superpopulation_aggregate",
              "finite_population_aggregate")


def share_table(shares: xr.Dataset, prob: float = HDI_PROB) -> pd.DataFrame:
    """The E1 table: one row per component and aggregate, both kinds of share."""
    frames = []
    for kind_dim, sp, fp in (("component", "superpopulation", "finite_population"),
                             ("aggregate", "superpopulation_aggregate",
                              "finite_population_aggregate")):
        f = interval_frame({"finite": shares[fp], "super": shares[sp]}, prob)
        f = f.rename(columns={kind_dim: "name"})
        f.insert(0, "kind", kind_dim)
        frames.append(f)
    return ResultTable(pd.concat(frames, ignore_index=True))
