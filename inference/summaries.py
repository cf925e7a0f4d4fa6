"""Posterior summaries every analysis reports the same way: mean and 94% HDI per quantity."""

from __future__ import annotations

import pandas as pd
import xarray as xr

from misalign.models.base import SAMPLE_DIMS

HDI_PROB = 0.94


def hdi(da: xr.DataArray, prob: float = HDI_PROB) -> xr.DataArray:
    """Highest-density interval over chains and draws (``ci_bound`` = lower, upper)."""
    import arviz as az

    return az.hdi(da, prob=prob, dim=list(SAMPLE_DIMS))


class ResultTable(pd.DataFrame):
    """A DataFrame that prints every column (a results table is read whole, not truncated)."""

    @property
    def _constructor(self):
        return ResultTable

    def __repr__(self) -> str:
        with pd.option_context("display.width", 1000, "display.max_columns", None,
                               "display.expand_frame_repr", False, "display.max_rows", 500,
                               "display.float_format", "{:.4f}".format):
            return super().__repr__()


def interval_frame(arrays: dict[str, xr.DataArray], prob: float = HDI_PROB) -> pd.DataFrame:
    """One row per label combination of the arrays' non-sample dims (all arrays share them),
    with ``{name}_mean``, ``{name}_lower``, ``{name}_upper`` columns per array, in the order
    given."""
    first = next(iter(arrays.values()))
    dims = [d for d in first.dims if d not in SAMPLE_DIMS]
    out = None
    for name, da in arrays.items():
        h = hdi(da, prob)
        part = xr.Dataset({f"{name}_mean": da.mean(SAMPLE_DIMS),
                           f"{name}_lower": h.sel(ci_bound="lower", drop=True),
                           f"{name}_upper": h.sel(ci_bound="upper", drop=True)})
        part = part.drop_vars([c for c in part.coords if c not in dims])
        frame = part.to_dataframe().reset_index() if dims else pd.DataFrame([{
            k: float(v) for k, v in part.data_vars.items()}])
        out = frame if out is None else out.merge(frame, on=dims, sort=False)
    return ResultTable(out.reset_index(drop=True))
