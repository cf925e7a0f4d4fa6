"""E3: how a rater's teacher-level scores relate to value-added, per posterior draw of the joint
measurement model (MEASUREMENT.md, E3), latent throughout (no plug-in teacher means).

A teacher's score from a source is the mean of its ratings over the teacher's cells in the
data's design (``agreement._divisors`` at teacher level): it loads λ_s on the teacher's quality
and 1 on the shared deviation, with the lower levels' variances divided by the counts. The
experts' score is the mean of single expert ratings over the same cells (loading 1 on quality,
none on the shared deviation). Value-added has SD_V and correlations ρ_q, ρ_s with the
teacher's quality q_t and shared deviation s_t, so with c_q = Cov(q_t, V) = SD_V ρ_q √vq_T and
c_s = SD_V ρ_s √vs_T: Cov(T_s, V) = λ_s c_q + c_s, Cov(T_E, V) = c_q, and true quality's own
correlation is ρ_q. A source's misalignment is T_s − T_E: its covariance with V is
(λ_s − 1) c_q + c_s, its variance Var T_s + Var T_E − 2 λ_s Vq (the two means share the
cells' quality).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr

from .agreement import _divisors, _parts, _sub, level_variances


def va_moments(post: xr.Dataset, parts: dict) -> tuple:
    """Per draw and task: value-added's covariances with the teacher's quality and shared
    deviation, and its variance (without the known error of the value-added estimates)."""
    sd = post["va_sd"]
    return (sd * post["va_rho_quality"] * np.sqrt(parts["quality_teacher"]),
            sd * post["va_rho_shared"] * np.sqrt(parts["shared_teacher"]), sd**2)


def value_added(post: xr.Dataset, design: pd.DataFrame) -> xr.Dataset | None:
    """Per draw and task: each source's, the experts' and true quality's correlation with
    value-added, each source's misalignment's, and their means over the sources; None when
    the model has no value-added."""
    if "va_sd" not in post:
        return None
    p = _parts(post)
    d = _divisors(design, "teacher")
    vq, vs, _, var_e = level_variances(p, d, "teacher")
    lam = p["lam"]
    below = (_sub(post, "llm_cell") + _sub(post, "lineage")) / d["cell"]
    var_s = lam**2 * vq + vs + below + p["noise"] / d["llm"]
    cq, cs, var_v = va_moments(post, p)
    corr_source = (lam * cq + cs) / np.sqrt(var_s * var_v)
    var_mis = var_s + var_e - 2.0 * lam * vq
    corr_mis = ((lam - 1.0) * cq + cs) / np.sqrt(var_mis * var_v)
    return xr.Dataset({
        "corr_va": corr_source,
        "corr_va_expert": cq / np.sqrt(var_e * var_v),
        "corr_va_quality": post["va_rho_quality"],
        "corr_va_misalignment": corr_mis,
        "mean_corr_va": corr_source.mean("source"),
        "mean_corr_va_misalignment": corr_mis.mean("source")})
