"""Variance shares of the E1 posterior: superpopulation and finite-population, per draw.

Both are shares of the variance of one rating's error, component by component (they sum to 1
per draw):

- **superpopulation**: κ σ² (κ = 1, but for the reference: σ²_reference × the mean over ratings
  of Σ_e w², the weights of the experts making a cell's reference); the residual's σ² is the
  rating-weighted mean of the per-task residual variances.
- **finite-population**: for the crossed components (llm, family, prompt, task and their
  interactions) and the reference, the variance *over the ratings in the data* of the realised
  effect each rating carries. Defined per rating, a nested batch adds up: family + llm within
  family is the variance of the LLMs' total effects, whatever the family labels (a family that
  explains nothing then takes nothing from the LLM term). Nested components keep σ² (thousands
  of levels).
- Student-t: the residual is the realised mean squared residual given the cell latents (σ²ν/(ν−2)
  diverges as ν → 2 on rounded scores; this stays finite and means what the Gaussian σ² means).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr

from misalign.data.components import PARTITION, present_aggregates
from misalign.models import EFFECTS, VariancePartitionModel
from misalign.models.base import SAMPLE_DIMS, flat_draws
from misalign.models.e1_priors import SIGMA_PRIORS
from misalign.models.fast_e1 import RESIDUAL_MEAN_SQUARE
from misalign.models.predictive import student_residual_mean_square

from .prior_overlap import MOSTLY_PRIOR, share_overlaps
from .summaries import HDI_PROB, ResultTable, interval_frame


def _per_rating_variance(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Variance over ratings of an effect: ``values`` (draws, slots) with each slot's share
    of the ratings."""
    mean = values @ weights
    return values**2 @ weights - mean**2


def design_effects(model: VariancePartitionModel, post: xr.Dataset, comp: str) -> np.ndarray:
    """(draws, design cells): the realised effect of ``comp`` each design cell carries."""
    spec = model.spec
    L, P = len(spec.coords["llm"]), len(spec.coords["prompt"])
    d = np.arange(spec.n_design)
    k, llm, p = d // (L * P), (d // P) % L, d % P
    name, dims = EFFECTS[comp]
    v = flat_draws(post[name].transpose(*SAMPLE_DIMS, *dims))
    index = {"llm": llm, "prompt": p, "task": k,
             "family": spec.llm_family[llm] if spec.has_family else None}
    return v[(slice(None), *[index[dim] for dim in dims])]


def _finite_crossed(model: VariancePartitionModel, post: xr.Dataset, comp: str) -> np.ndarray:
    spec = model.spec
    if comp == "reference":
        w = spec.reference_weights
        combos, cell_combo = np.unique(w, axis=0, return_inverse=True)
        share = np.bincount(cell_combo.ravel()[model.data.cell],
                            minlength=len(combos)) / model.data.n_ratings
        return _per_rating_variance(flat_draws(post["reference_effect"]) @ combos.T, share)
    share = np.bincount(spec.design, minlength=spec.n_design) / model.data.n_ratings
    return _per_rating_variance(design_effects(model, post, comp), share)


def student_residual_variance(model: VariancePartitionModel, post: xr.Dataset) -> np.ndarray:
    """(draws,) realised mean squared residual given the cell latents: stored per draw by the
    fit (``residual_mean_square``), or from the latents of a file that kept them."""
    if RESIDUAL_MEAN_SQUARE in post:
        return flat_draws(post[RESIDUAL_MEAN_SQUARE])
    return student_residual_mean_square(model, post)


def _variances(model: VariancePartitionModel, post: xr.Dataset, finite: bool) -> xr.DataArray:
    spec = model.spec
    shape = (post.sizes["chain"], post.sizes["draw"])
    out = []
    for comp in spec.components:
        if comp == "residual" and model.likelihood == "student":
            v = student_residual_variance(model, post)
        elif finite and (comp in EFFECTS or comp == "reference"):
            v = _finite_crossed(model, post, comp)
        else:
            v = flat_draws(post[SIGMA_PRIORS[comp]]) ** 2 * model.kappa(comp)
        out.append(v.reshape(shape))
    return xr.DataArray(np.stack(out, axis=-1), dims=(*SAMPLE_DIMS, "component"),
                        coords={"chain": post["chain"].values, "draw": post["draw"].values,
                                "component": list(spec.components)})


def _aggregate(shares: xr.DataArray) -> xr.DataArray:
    members = present_aggregates(shares["component"].values.tolist())
    parts = [shares.sel(component=list(m)).sum("component") for m in members.values()]
    return xr.concat(parts, dim=xr.DataArray(list(members), dims="aggregate", name="aggregate"))


def compute_shares(model: VariancePartitionModel, posterior: xr.Dataset | None = None,
                   overlaps: bool = True) -> xr.Dataset:
    """Dataset with superpopulation/finite-population shares and aggregates, per draw, and
    (``overlaps``) how much each superpopulation share's posterior overlaps its prior."""
    post = posterior if posterior is not None else model.idata["posterior"].to_dataset()
    ds = xr.Dataset()
    for kind, finite in (("superpopulation", False), ("finite_population", True)):
        v = _variances(model, post, finite)
        share = v / v.sum("component")
        ds[kind] = share.transpose(*SAMPLE_DIMS, "component")
        ds[f"{kind}_aggregate"] = _aggregate(share).transpose(*SAMPLE_DIMS, "aggregate")
        ds[f"{kind}_variance"] = v.transpose(*SAMPLE_DIMS, "component")
    if overlaps:
        members = present_aggregates(list(model.spec.components))
        ds = ds.assign(share_overlaps(model, ds, members))
        ds.attrs["mostly_prior_threshold"] = MOSTLY_PRIOR
    ds.attrs["hdi_prob"] = HDI_PROB
    ds.attrs["partition"] = ", ".join(a for a in PARTITION
                                      if a in ds["superpopulation_aggregate"]["aggregate"])
    return ds


SHARE_VARS = ("superpopulation", "finite_population", "superpopulation_aggregate",
              "finite_population_aggregate")


def share_table(shares: xr.Dataset, prob: float = HDI_PROB) -> pd.DataFrame:
    """The E1 table: one row per component and aggregate, both kinds of share; with the
    prior overlap of each superpopulation share and ``mostly_prior`` above the threshold."""
    frames = []
    threshold = shares.attrs.get("mostly_prior_threshold", MOSTLY_PRIOR)
    for kind_dim, sp, fp in (("component", "superpopulation", "finite_population"),
                             ("aggregate", "superpopulation_aggregate",
                              "finite_population_aggregate")):
        f = interval_frame({"finite": shares[fp], "super": shares[sp]}, prob)
        if f"{sp}_prior_overlap" in shares:
            ov = shares[f"{sp}_prior_overlap"].to_series()
            f["super_prior_overlap"] = f[kind_dim].map(ov).astype(float)
            f["mostly_prior"] = f["super_prior_overlap"] > threshold
            f["note"] = np.where(f["mostly_prior"], "superpop. mostly prior: read finite-pop.",
                                 "")
        f = f.rename(columns={kind_dim: "name"})
        f.insert(0, "kind", kind_dim)
        frames.append(f)
    return ResultTable(pd.concat(frames, ignore_index=True))
