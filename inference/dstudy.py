"""E5, the decision study: the error of an average over k LLMs × q prompts, projected from E1's
variance components per posterior draw (MEASUREMENT.md, E5).

Averaging a unit × task's ratings over k LLMs and q prompts divides each component by the
number of distinct levels it varies over: an LLM's effects (``llm``, ``llm:task``,
``llm:unit:task``) by k, a prompt's by q, the pairs' and the residual by k·q, the family's by
the families among the k LLMs (min(k, F): the LLMs spread over the data's F families). What
no average over LLMs removes is the **floor**: the task's bias, what every LLM shares on a unit
(``unit:task``, ``unit``, ``transcript``, ``teacher``), lineage and the reference's own
error. Two versions, as E1 reports: **superpopulation** (new LLMs and prompts from the same
populations: σ² / k) and **finite population** (k of the data's L LLMs drawn without
replacement: the realised effects' variance × (L − k) / (k (L − 1)), 0 at k = L).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr

from misalign.data.components import AGGREGATES

from .summaries import ResultTable, hdi

BY_LLM = ("llm", "llm:task")  # an LLM's fixed effects
BY_PROMPT = ("prompt", "prompt:task")
BY_PAIR = ("llm:prompt", "llm:prompt:task")
# Drawn afresh on every cell: averaged as random terms in both versions.
PER_CELL = {"llm:unit:task": "k", "residual": "kq"}
FLOOR = (*AGGREGATES["shared"], "task", "lineage", "reference")
NEAR_FLOOR = 1.05  # "within 5% of the floor"


def _finite_factor(n: xr.DataArray, size: int) -> xr.DataArray:
    """E[(mean of n of ``size`` zero-sum effects)²] / (their mean square): (size − n) /
    (n (size − 1)), 0 when every level is averaged over."""
    return (size - n) / (n * (size - 1)) if size > 1 else 0.0 * n


def project(variances: xr.DataArray, ks, qs, n_llms: int, n_prompts: int, n_families: int,
            finite: bool) -> xr.Dataset:
    """Per draw: the error variance of an average over k LLMs × q prompts (``error``), the
    floor, and the share of the error above it; ``variances`` (draws…, component)."""
    k = xr.DataArray(np.asarray(ks, float), dims="k", coords={"k": np.asarray(ks)})
    q = xr.DataArray(np.asarray(qs, float), dims="q", coords={"q": np.asarray(qs)})
    fam = np.minimum(k, n_families)
    if finite:
        mk, mq = _finite_factor(k, n_llms), _finite_factor(q, n_prompts)
        mult = {"k": mk, "q": mq, "kq": mk * mq, "f": _finite_factor(fam, n_families)}
    else:
        mult = {"k": 1.0 / k, "q": 1.0 / q, "kq": 1.0 / (k * q), "f": 1.0 / fam}
    rule = dict.fromkeys(FLOOR, None) | dict.fromkeys(BY_LLM, "k") | dict.fromkeys(
        BY_PROMPT, "q") | dict.fromkeys(BY_PAIR, "kq") | {"family": "f"}
    zero = xr.zeros_like(variances.isel(component=0, drop=True))
    error, floor = zero * k * q, zero
    for comp in variances["component"].values.tolist():
        v = variances.sel(component=comp, drop=True)
        if comp in PER_CELL:
            error = error + v * {"k": 1.0 / k, "kq": 1.0 / (k * q)}[PER_CELL[comp]]
        elif comp not in rule:
            raise ValueError(f"component {comp!r} has no rule in the decision study")
        elif rule[comp] is None:
            error, floor = error + v, floor + v
        else:
            error = error + v * mult[rule[comp]]
    return xr.Dataset({"error": error, "floor": floor, "above_floor": 1.0 - floor / error})


def smallest_near_floor(ds: xr.Dataset) -> tuple[int, int] | None:
    """The smallest design (fewest ratings k·q, then fewest LLMs) whose posterior mean error is
    within 5% of the mean floor; None when no design in the grid gets there."""
    sample = [d for d in ds["error"].dims if d not in ("k", "q")]
    err, floor = ds["error"].mean(sample), float(ds["floor"].mean())
    best = None
    for k in ds["k"].values.tolist():
        for q in ds["q"].values.tolist():
            if float(err.sel(k=k, q=q)) <= NEAR_FLOOR * floor:
                key = (k * q, k)
                if best is None or key < best[0]:
                    best = (key, (int(k), int(q)))
    return best[1] if best else None


def e1_decision_study(coords: dict, shares: xr.Dataset) -> xr.Dataset:
    """Both versions over k = 1 … 2L LLMs and q = 1 … 2P prompts (the finite population only up
    to the data's L and P; NaN beyond), from E1's per-draw variances."""
    L, P = len(coords["llm"]), len(coords["prompt"])
    F = len(coords.get("family", coords["llm"]))
    ks, qs = np.arange(1, 2 * L + 1), np.arange(1, 2 * P + 1)
    sup = project(shares["superpopulation_variance"], ks, qs, L, P, F, finite=False)
    fin = project(shares["finite_population_variance"], ks[:L], qs[:P], L, P, F, finite=True)
    fin = fin.reindex(k=ks, q=qs)
    out = xr.Dataset({f"{kind}_{name}": ds[name] for kind, ds in
                      (("superpopulation", sup), ("finite_population", fin))
                      for name in ("error", "floor")})
    out.attrs["near_floor"] = NEAR_FLOOR
    return out


def version(ds: xr.Dataset, kind: str) -> xr.Dataset:
    """One version's error and floor, with the grid the version covers."""
    out = xr.Dataset({"error": ds[f"{kind}_error"], "floor": ds[f"{kind}_floor"]})
    if kind == "finite_population":
        err = out["error"]
        sample = [d for d in err.dims if d not in ("k", "q")]
        keep = err.notnull().all(sample)
        out = out.sel(k=keep.any("q"), q=keep.any("k"))
    return out


def decision_table(ds: xr.Dataset) -> pd.DataFrame:
    """Rows for k ∈ {1, 2, L, 2L} × q ∈ {1, P} (those in the grid): each version's error
    variance (mean and 94% HDI) and the floor's share of it; the smallest design within 5% of
    each version's floor in the frame's ``attrs``."""
    ks, qs = ds["k"].values.tolist(), ds["q"].values.tolist()
    L, P = len(ks) // 2, len(qs) // 2
    rows = []
    for k in sorted({1, min(2, L), L, 2 * L}):
        for q in sorted({1, P}):
            row = {"llms": k, "prompts": q}
            for kind in ("superpopulation", "finite_population"):
                err = ds[f"{kind}_error"].sel(k=k, q=q, drop=True)
                if bool(err.isnull().any()):
                    row |= {f"{kind}_mean": np.nan, f"{kind}_lower": np.nan,
                            f"{kind}_upper": np.nan, f"{kind}_floor_share": np.nan}
                    continue
                h = hdi(err)
                row |= {f"{kind}_mean": float(err.mean()),
                        f"{kind}_lower": float(h.sel(ci_bound="lower")),
                        f"{kind}_upper": float(h.sel(ci_bound="upper")),
                        f"{kind}_floor_share": float((ds[f"{kind}_floor"] / err).mean())}
            rows.append(row)
    out = ResultTable(pd.DataFrame(rows))
    out.attrs["smallest"] = {kind: smallest_near_floor(version(ds, kind))
                             for kind in ("superpopulation", "finite_population")}
    return out
