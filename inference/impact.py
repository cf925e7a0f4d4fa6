"""E3: how a rater's teacher-level scores relate to value-added, per posterior draw of the joint
measurement model (MEASUREMENT.md, E3), latent throughout (no plug-in teacher means).

A teacher's score from a source is the mean of its ratings over the teacher's cells in the
data's design (``agreement._divisors`` at teacher level): it loads λ_s on the teacher's quality
and 1 on the shared deviation, with the lower levels' variances divided by the counts. The
experts' score is the mean of single expert ratings over the same cells (loading 1 on quality,
none on the shared deviation). Value-added is V = ν₀ + β_q q_t + β_s s_t + e with Var e = σ²_V,
so Cov(T_s, V) = λ_s β_q vq_T + β_s vs_T, Cov(T_E, V) = β_q vq_T, and true quality's own
correlation is that of q_t. A source's misalignment is T_s − T_E: its covariance with V is
(λ_s − 1) β_q vq_T + β_s vs_T, its variance Var T_s + Var T_E − 2 λ_s Vq (the two means share
the cells' quality).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr

from .agreement import _divisors, _parts, _sub, level_variances


def value_added(post: xr.Dataset, design: pd.DataFrame) -> xr.Dataset | None:
    """Per draw and task: each source's, the experts' and true quality's correlation with
    value-added, each source's misalignment's, and their means over the sources; None when
    the model has no value-added."""
    if "beta_quality" not in post:
        return None
    p = _parts(post)
    d = _divisors(design, "teacher")
    vq_t, vs_t = p["quality_teacher"], p["shared_teacher"]
    vq, vs, _, var_e = level_variances(p, d, "teacher")
    lam = p["lam"]
    below = (_sub(post, "llm_cell") + _sub(post, "lineage")) / d["cell"]
    var_s = lam**2 * vq + vs + below + p["noise"] / d["llm"]
    bq, bs = post["beta_quality"], post["beta_shared"]
    var_v = bq**2 * vq_t + bs**2 * vs_t + post["sigma_va"] ** 2
    corr_source = (lam * bq * vq_t + bs * vs_t) / np.sqrt(var_s * var_v)
    var_mis = var_s + var_e - 2.0 * lam * vq
    corr_mis = ((lam - 1.0) * bq * vq_t + bs * vs_t) / np.sqrt(var_mis * var_v)
    return xr.Dataset({
        "corr_va": corr_source,
        "corr_va_expert": bq * vq_t / np.sqrt(var_e * var_v),
        "corr_va_quality": bq * np.sqrt(vq_t / var_v),
        "corr_va_misalignment": corr_mis,
        "mean_corr_va": corr_source.mean("source"),
        "mean_corr_va_misalignment": corr_mis.mean("source")})
