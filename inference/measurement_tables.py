"""The joint measurement model's E3 and E4 tables (posterior mean and 94% HDI per row), from
its derived groups: one row per task and rater, or per task and ensemble with the majority vote
and the median single source beside them."""

from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr

from misalign.data.ensembles import MAJORITY
from misalign.models.base import SAMPLE_DIMS

from .summaries import interval_frame


def va_frame(va: xr.Dataset | None) -> pd.DataFrame | None:
    if va is None:
        return None
    rows = {"true quality": (va["corr_va_quality"], None),
            "experts": (va["corr_va_expert"], None),
            "mean over sources": (va["mean_corr_va"], va["mean_corr_va_misalignment"])}
    for s in va["source"].values:
        rows[str(s)] = (va["corr_va"].sel(source=s, drop=True),
                        va["corr_va_misalignment"].sel(source=s, drop=True))
    frames = []
    for rater, (corr, mis) in rows.items():
        parts = {"corr": corr} | ({"misalignment": mis} if mis is not None else {})
        t = interval_frame(parts)
        t.insert(1, "rater", rater)
        t["p_corr_below_0"] = (corr < 0).mean(SAMPLE_DIMS).values
        t["p_misalignment_below_0"] = ((mis < 0).mean(SAMPLE_DIMS).values
                                       if mis is not None else np.nan)
        frames.append(t)
    return pd.concat(frames, ignore_index=True).sort_values(
        "task", kind="stable").reset_index(drop=True)


def _ensemble_rows(ens: xr.Dataset, level: str) -> pd.DataFrame:
    at = ens.sel(level=level)
    parts = {"expert": at["corr_expert"], "quality": at["corr_quality"]}
    if "corr_va" in ens:
        parts |= {"va": ens["corr_va"], "va_misalignment": ens["corr_va_misalignment"]}
    t = interval_frame(parts)
    if "below_median_va" in ens:
        p = ens["below_median_va"].mean(SAMPLE_DIMS).to_dataframe("p_below_median_va")
        keys = [k for k in ("ensemble", "task") if k in p.index.names]
        t = t.merge(p.reset_index()[[*keys, "p_below_median_va"]], on=keys, how="left")
    return t


def ensemble_frame(ens: xr.Dataset | None, level: str, vote: xr.Dataset | None = None
                    ) -> pd.DataFrame | None:
    if ens is None:
        return None
    t = _ensemble_rows(ens, level)
    frames = [t]
    if vote is not None:
        v = _ensemble_rows(vote, level)
        v.insert(0, "ensemble", MAJORITY)
        frames.append(v)
    median = {"expert": ens["median_source_expert"].sel(level=level),
              "quality": ens["median_source_quality"].sel(level=level)}
    if "corr_va" in ens:
        median["va"] = ens["median_source_va"]
    m = interval_frame(median)
    m.insert(0, "ensemble", "median single source")
    frames.append(m)
    return pd.concat(frames, ignore_index=True).sort_values(
        "task", kind="stable").reset_index(drop=True)

