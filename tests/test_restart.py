"""Chains stuck in a minor mode are sampled again from the best chain (models/restart.py)."""

import numpy as np
import pymc as pm
import pytest
import xarray as xr

from misalign.models.options import SamplerConfig
from misalign.models.restart import GAP, restart_stuck_chains


def _idata(x: np.ndarray, logp: np.ndarray) -> xr.DataTree:
    dims = ("chain", "draw")
    coords = {"chain": np.arange(x.shape[0]), "draw": np.arange(x.shape[1])}
    return xr.DataTree.from_dict({
        "posterior": xr.Dataset({"x": (dims, x)}, coords=coords),
        "sample_stats": xr.Dataset({"logp": (dims, logp), "diverging": (dims, x * 0 > 1)},
                                   coords=coords)})


@pytest.mark.parametrize("sampler", ["nutpie", "pymc"])
def test_a_chain_far_below_the_best_is_sampled_again_from_it(sampler):
    with pm.Model() as model:
        pm.Normal("x", 3.0, 1.0)
    draws = 200
    # (not exactly at the mode: nutpie refuses a start whose gradient is zero)
    x = np.stack([np.full(draws, 3.3), np.full(draws, -40.0), np.full(draws, 2.5)])
    lp = np.stack([np.full(draws, -1.0), np.full(draws, -1.0 - 3 * GAP), np.full(draws, -1.2)])
    cfg = SamplerConfig(sampler=sampler, draws=draws, tune=200, chains=3, seed=5,
                        progressbar=False, target_accept=0.9)
    out, record = restart_stuck_chains(model, _idata(x, lp), cfg, timing := {})
    assert record == {"restarted_chains": [1], "from_chain": 0,
                      "log_density_below_best": [150.0]}
    post = out["posterior"].to_dataset()
    assert list(post["chain"].values) == [0, 1, 2]
    np.testing.assert_array_equal(post["x"].sel(chain=0), x[0])  # untouched
    np.testing.assert_array_equal(post["x"].sel(chain=2), x[2])
    fresh = post["x"].sel(chain=1).values
    assert abs(fresh.mean() - 3.0) < 0.5 and fresh.std() > 0.5  # a real chain in the mode
    assert out["sample_stats"].to_dataset().sizes["chain"] == 3
    assert timing["restart_s"] > 0


def test_chains_in_one_mode_are_left_alone():
    draws = 10
    x = np.zeros((4, draws))
    lp = np.stack([np.full(draws, -1.0 - i) for i in range(4)])
    with pm.Model() as model:
        pm.Normal("x")
    idata = _idata(x, lp)
    out, record = restart_stuck_chains(model, idata, SamplerConfig(), {})
    assert record == {} and out is idata
