"""Simulation-based recovery of the E1 shares (the model's correctness proof)."""

import warnings

import numpy as np
import pytest

from misalign.data import build_misalignment
from misalign.data.components import PARTITION
from misalign.data.simulate import simulate
from misalign.inference import fit_e1
from tests.recovery import coverage


def test_small_truth_inside_hdi_and_gate_passes(small_fit, small_study):
    tab = coverage(small_fit, small_study.truth)
    assert small_fit.gate.passed, small_fit.gate.message()
    assert tab["inside"].all(), tab[~tab["inside"]].to_string()
    # Shares of each draw sum to 1, and the aggregates partition the total.
    fp = small_fit.shares["finite_population"].sum("component")
    np.testing.assert_allclose(fp.values, 1.0, rtol=1e-12)
    assert set(PARTITION) <= set(small_fit.shares["aggregate"].values.tolist())
    agg = small_fit.shares["finite_population_aggregate"].sel(aggregate=list(PARTITION))
    np.testing.assert_allclose(agg.sum("aggregate").values, 1.0, rtol=1e-12)


@pytest.mark.slow
def test_small_calibration_across_seeds():
    """Coverage of 94% HDIs over several simulated studies is near nominal, not seed luck."""
    inside = []
    for seed in range(6):
        study = simulate("small", seed=100 + seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            res = fit_e1(build_misalignment(study.table()), draws=1000, tune=1000, seed=seed,
                         progressbar=False)
        tab = coverage(res, study.truth)
        inside.extend(tab.loc[tab["kind"] == "component", "inside"].tolist())
    rate = float(np.mean(inside))
    assert rate >= 0.85, f"coverage {rate:.2f} over {len(inside)} component shares"


@pytest.mark.slow
def test_reference_truth_inside_hdi_and_gate_passes():
    study = simulate("reference")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        res = fit_e1(build_misalignment(study.table()), draws=1000, tune=1000, chains=4, seed=1,
                     progressbar=False)
    tab = coverage(res, study.truth)
    assert res.gate.passed, res.gate.message()
    assert tab["inside"].all(), tab[~tab["inside"]].to_string()
