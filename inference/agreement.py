"""E2 and E1 net of the reference, per posterior draw of the joint measurement model
(MEASUREMENT.md; RECURSION.md §6).

At each level of the data's design a source's score is the mean of its ratings over the cells
(and replicates) of a cell, lesson or teacher, and an expert's the mean of single expert
ratings over the same cells. With divisors d_L, d_C (lessons and cells averaged over), the
score loads λ_s on quality of variance Vq = vq_T + vq_L/d_L + vq_C/d_C and 1 on the shared
deviation of variance Vs (likewise), plus its own cell error and lineage divided by d_C and
its noise σ²_s/(cells × replicates). The level's true quality is the part that does not
average away (cell: vq_T + vq_L + vq_C; lesson: vq_T + vq_L; teacher: vq_T). A single expert
rating carries the severity of a rater drawn at random (the variance of these raters'
severities) and the experts' noise.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr

LEVELS = ("cell", "lesson", "teacher")
NET_COMPONENTS = ("attributable", "compression", "shared_deviation", "lineage", "residual",
                  "reference")


def _divisors(design: pd.DataFrame, level: str) -> dict[str, xr.DataArray]:
    """Per task: lessons, cells, LLM ratings and expert ratings averaged over at ``level``."""
    m, n, k = (xr.DataArray(design[c].to_numpy(float), dims="task",
                            coords={"task": design.index.tolist()}) for c in ("m", "n", "k"))
    one = xr.ones_like(m)
    if level == "cell":
        return {"lesson": one, "cell": one, "llm": one, "expert": one}
    if level == "lesson":
        return {"lesson": one, "cell": m, "llm": m * k, "expert": m}
    return {"lesson": n, "cell": n * m, "llm": n * m * k, "expert": n * m}


def _parts(post: xr.Dataset) -> dict[str, xr.DataArray]:
    out = {f"{p}_{lv}": post[f"sigma_{p}_{lv}"] ** 2 for p in ("quality", "shared")
           for lv in LEVELS}
    out["lam"] = post["lambda_source"]
    out["noise"] = post["noise_sd_source"] ** 2
    out["expert"] = post["sigma_expert"] ** 2
    out["severity"] = (rater_variance(post) if "rater_effect" in post
                       else xr.zeros_like(post["sigma_expert"]))
    return out


def level_variances(p: dict[str, xr.DataArray], d: dict[str, xr.DataArray], level: str
                    ) -> tuple[xr.DataArray, ...]:
    """At ``level`` of the design (divisors ``d``): the quality and shared-deviation
    variances a mean over the level's cells carries, the level's own true quality, and a
    mean of single expert ratings' variance."""
    vq, vs = (p[f"{part}_teacher"] + p[f"{part}_lesson"] / d["lesson"]
              + p[f"{part}_cell"] / d["cell"] for part in ("quality", "shared"))
    true_q = {"cell": p["quality_teacher"] + p["quality_lesson"] + p["quality_cell"],
              "lesson": p["quality_teacher"] + p["quality_lesson"],
              "teacher": p["quality_teacher"]}[level]
    return vq, vs, true_q, vq + (p["severity"] + p["expert"]) / d["expert"]


def rater_variance(post: xr.Dataset) -> xr.DataArray:
    """The variance of these raters' severities (finite population: the experts whose single
    ratings the correlations are with)."""
    return (post["rater_effect"] ** 2).mean("rater")


def _same(codes: np.ndarray, post: xr.Dataset) -> xr.DataArray:
    src = post["source"].values
    return xr.DataArray((codes[:, None] == codes[None, :]).astype(float),
                        dims=("source", "source_bis"), coords={"source": src, "source_bis": src})


def _sub(post: xr.Dataset, name: str) -> xr.DataArray:
    key = f"sigma_{name}"
    return post[key] ** 2 if key in post else xr.zeros_like(post["sigma_expert"])


def agreement(post: xr.Dataset, design: pd.DataFrame, source_llm: np.ndarray,
              source_family: np.ndarray) -> xr.Dataset:
    """Per draw, task and level: correlations between sources (``source`` × ``source_bis``),
    of each source with a single expert rating and with true quality, the noise ceiling, and
    the mean inter-source and source–expert correlations. Two prompts of one LLM also share
    its own error on a cell, two LLMs of one family their lineage (cell-level terms)."""
    p = _parts(post)
    own, lineage = _sub(post, "llm_cell"), _sub(post, "lineage")
    below = own * _same(source_llm, post) + lineage * _same(source_family, post)
    lam, lam_bis = p["lam"], p["lam"].rename(source="source_bis")
    out = []
    for level in LEVELS:
        d = _divisors(design, level)
        vq, vs, true_q, var_e = level_variances(p, d, level)
        var_s = lam**2 * vq + vs + (own + lineage) / d["cell"] + p["noise"] / d["llm"]
        var_bis = var_s.rename(source="source_bis")
        corr = (lam * lam_bis * vq + vs + below / d["cell"]) / np.sqrt(
            var_s * var_bis)
        with_expert = lam * vq / np.sqrt(var_s * var_e)
        ds = xr.Dataset({
            "corr_sources": corr,
            "corr_expert": with_expert,
            "corr_quality": lam * np.sqrt(true_q / var_s),
            "noise_ceiling": np.sqrt(true_q / var_e),
            "mean_inter": _mean_off_diagonal(corr),
            "mean_expert": with_expert.mean("source")})
        out.append(ds.expand_dims(level=[level]))
    res = xr.concat(out, dim="level")
    res["inter_minus_expert"] = res["mean_inter"] - res["mean_expert"]
    return res


def _mean_off_diagonal(corr: xr.DataArray) -> xr.DataArray:
    S = corr.sizes["source"]
    if S < 2:
        return xr.full_like(corr.isel(source=0, source_bis=0), np.nan)
    eye = xr.DataArray(np.eye(S, dtype=bool), dims=("source", "source_bis"),
                       coords={"source": corr["source"], "source_bis": corr["source_bis"]})
    return corr.where(~eye).sum(("source", "source_bis")) / (S * (S - 1))


def upper_pairs(corr: xr.DataArray) -> xr.DataArray:
    """The distinct pairs of a correlation matrix along one ``pair`` axis (what the gate and
    tests compare; the diagonal is 1)."""
    src = [str(s) for s in corr["source"].values]
    i, j = np.triu_indices(len(src), k=1)
    flat = corr.stack(pair=("source", "source_bis"))
    keep = [a * len(src) + b for a, b in zip(i, j, strict=True)]
    out = flat.isel(pair=keep).drop_vars(["pair", "source", "source_bis"])
    return out.assign_coords(pair=[f"{src[a]} ~ {src[b]}" for a, b in zip(i, j, strict=True)])


def net_e1(post: xr.Dataset, design: pd.DataFrame) -> xr.Dataset:
    """Per draw and task: the LLM error against true quality split into attributable
    (Var_s μ_s + Var_s λ_s · Vq), compression ((mean λ − 1)² Vq), the shared deviation (Vs),
    lineage (what the LLMs of one family, and the
    prompts of one LLM, share on a cell beyond that, as E1 counts it),
    residual (mean σ²_s), and the reference part (severity + noise of the experts behind each
    cell's reference, averaged over the cells by 1/number of experts): variances on the
    expert-SD scale and shares of their sum (which is E1's total error variance). The sources
    are weighted alike (ddof 0: these sources, as E1's finite-population column)."""
    p = _parts(post)
    vq = p["quality_teacher"] + p["quality_lesson"] + p["quality_cell"]
    vs = p["shared_teacher"] + p["shared_lesson"] + p["shared_cell"]
    lam, mu = p["lam"], post["mu_source"]
    inv_e = xr.DataArray(design["inv_experts"].to_numpy(float), dims="task",
                         coords={"task": design.index.tolist()})
    parts = {"attributable": mu.var("source") + lam.var("source") * vq,
             "compression": (lam.mean("source") - 1.0) ** 2 * vq,
             "shared_deviation": vs,
             "lineage": _sub(post, "lineage") + _sub(post, "llm_cell"),
             "residual": p["noise"].mean("source"),
             "reference": (p["severity"] + p["expert"]) * inv_e}
    var = xr.concat([parts[c] for c in NET_COMPONENTS],
                    dim=pd.Index(list(NET_COMPONENTS), name="component"))
    total = var.sum("component")
    return xr.Dataset({"variance": var, "share": var / total})
