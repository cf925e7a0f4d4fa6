"""Chains caught in a minor mode: found by their log density, restarted from the best chain.

The joint measurement model has, on large data with clipped (1–3) rubrics, a second mode where
the quality latent is a contrast among the LLMs and the experts are pure noise. On the
reference preset's SMQR it sits 590 nats below the right mode (posterior mass e^-590 of it),
and two of four chains settled there during warm-up whatever their start; no chain ever left
either mode. A chain whose mean log density is more than ``GAP`` below the best chain's is such
a chain: it is sampled again, warm-up and all, from the best chain's last draw, and replaces
the stuck one. What was restarted, and by how much it was below, goes into the fit's record,
so the results say so.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np
import pymc as pm
import xarray as xr

from .backend import sample
from .options import SamplerConfig

# Far beyond the spread of a chain's mean log density in one mode (≈ √(d/2)/√ESS for d
# parameters: under a nat at this model's size), far below the gaps seen (590, 770, 4,850).
GAP = 50.0


def chain_log_density(idata: xr.DataTree) -> np.ndarray | None:
    """Each chain's mean log density over its draws (nutpie ``logp``, PyMC ``lp``)."""
    if "sample_stats" not in idata.children:
        return None
    ss = idata["sample_stats"].to_dataset()
    for name in ("logp", "lp"):
        if name in ss:
            return ss[name].mean("draw").values
    return None


def restart_stuck_chains(model: pm.Model, idata: xr.DataTree, cfg: SamplerConfig,
                         timing: dict, resample: Callable | None = None
                         ) -> tuple[xr.DataTree, dict[str, Any]]:
    """``idata`` with every stuck chain sampled again from the best chain's last draw;
    the record of what was done (empty when nothing was). ``resample(config, draw, timing)``
    samples from that draw (a Dataset of every variable) instead of compiling ``model`` (the
    fast path's kernels)."""
    lp = chain_log_density(idata)
    if lp is None or len(lp) < 2:
        return idata, {}
    best = int(np.argmax(lp))
    stuck = [int(c) for c in np.flatnonzero(lp < lp[best] - GAP)]
    if not stuck:
        return idata, {}
    post = idata["posterior"].to_dataset()
    last = {v.name: np.asarray(post[v.name].isel(chain=best, draw=-1).values)
            for v in model.free_RVs}
    again: dict[str, Any] = {}
    seed = None if cfg.seed is None else cfg.seed + 104729
    again_cfg = replace(cfg, chains=len(stuck), seed=seed)
    if resample is None:
        new = sample(model, again_cfg, timing=again, start=(last, set()))
    else:
        new = resample(again_cfg, post.isel(chain=best, draw=-1), again)
    out = idata.copy()
    for name, node in idata.children.items():
        ds = node.to_dataset()
        if "chain" not in ds.dims or name not in new.children:
            continue
        fresh = new[name].to_dataset().assign_coords(chain=ds["chain"].values[stuck])
        kept = ds.drop_sel(chain=ds["chain"].values[stuck])
        out[name] = xr.concat([kept, fresh], dim="chain", data_vars="all",
                              coords="minimal", compat="override").sortby("chain")
    timing["restart_s"] = float(np.nansum([again.get("sample_s"), again.get("compile_s")]))
    record = {"restarted_chains": stuck, "from_chain": best,
              "log_density_below_best": [round(float(lp[best] - lp[c]), 1) for c in stuck]}
    return out, record
