"""E4: ensembles (weighted means of the sources' single ratings, ``data/ensembles.py``) per
posterior draw of the joint measurement model, in closed form (MEASUREMENT.md, E4).

An ensemble with weights w loads λ_w = Σ w_s λ_s on quality and Σ w_s = 1 on the shared
deviation (it never averages out); an LLM's own cell error enters with (its sources' summed
weight)², lineage with (its family's)², noise with Σ w_s² σ²_s. At each level of the data's
design the lower levels' variances are divided by the counts, as for a single source
(``agreement.py``); value-added at teacher level as in ``impact.py``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr

from .agreement import LEVELS, _divisors, _parts, _sub, level_variances
from .impact import va_moments


def _grouped(w: xr.DataArray, codes: np.ndarray) -> xr.DataArray:
    """Σ over groups of (the group's summed weight)²."""
    onehot = xr.DataArray((codes[:, None] == np.unique(codes)[None, :]).astype(float),
                          dims=("source", "group"), coords={"source": w["source"]})
    return ((w @ onehot) ** 2).sum("group")


def ensembles(post: xr.Dataset, design: pd.DataFrame, weights: pd.DataFrame,
              source_llm: np.ndarray, source_family: np.ndarray) -> xr.Dataset:
    """Per draw, task and ensemble: correlation with a single expert rating and with true
    quality at every level; with value-added and the ensemble's misalignment (minus the
    experts') with it at teacher level, when the model has value-added."""
    w = xr.DataArray(weights.to_numpy(float), dims=("ensemble", "source"),
                     coords={"ensemble": weights.index.tolist(), "source": post["source"]})
    p = _parts(post)
    lam_w = (w * p["lam"]).sum("source")
    ones = w.sum("source")
    own = _sub(post, "llm_cell") * _grouped(w, source_llm)
    lineage = _sub(post, "lineage") * _grouped(w, source_family)
    out, at = [], {}
    for level in LEVELS:
        d = _divisors(design, level)
        vq, vs, true_q, var_e = level_variances(p, d, level)
        var = (lam_w**2 * vq + ones**2 * vs + (own + lineage) / d["cell"]
               + (w**2 * p["noise"]).sum("source") / d["llm"])
        at[level] = (var, var_e, vq)
        out.append(xr.Dataset({"corr_expert": lam_w * vq / np.sqrt(var * var_e),
                               "corr_quality": lam_w * np.sqrt(true_q / var)}
                              ).expand_dims(level=[level]))
    res = xr.concat(out, dim="level")
    if "va_sd" in post:  # value-added, at teacher level
        var, var_e, vq = at["teacher"]
        cq, cs, var_v = va_moments(post, p)
        cov = lam_w * cq + ones * cs
        var_mis = var + var_e - 2.0 * lam_w * vq
        res["corr_va"] = cov / np.sqrt(var * var_v)
        res["corr_va_misalignment"] = (cov - cq) / np.sqrt(var_mis * var_v)
    return res
