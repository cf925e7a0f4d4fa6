"""E5, the decision study: the projection rules against enumeration and by hand, recovery of
the floor's share on the small preset, and ``misalign dstudy``."""

import json
import subprocess
import sys
from itertools import combinations

import numpy as np
import pytest
import xarray as xr
from measurement_checks import floor_share_at, true_floor_share_at

from misalign.inference.dstudy import _finite_factor, project
from misalign.inference.summaries import hdi


def test_finite_factor_equals_enumerating_every_subset():
    rng = np.random.default_rng(0)
    for L in (3, 5, 8):
        effects = rng.normal(size=L)
        effects -= effects.mean()  # realised, zero-sum: the finite population
        ms = np.mean(effects**2)
        for k in range(1, L + 1):
            brute = np.mean([np.mean(effects[list(s)]) ** 2 for s in combinations(range(L), k)])
            factor = float(_finite_factor(xr.DataArray(float(k)), L))
            assert brute == pytest.approx(ms * factor, abs=1e-12)


def test_superpopulation_projection_by_hand():
    v = {"llm": 0.2, "prompt": 0.1, "llm:prompt": 0.06, "residual": 0.3, "llm:unit:task": 0.04,
         "unit:task": 0.25, "task": 0.05, "reference": 0.1, "family": 0.08, "lineage": 0.02}
    da = xr.DataArray(list(v.values()), dims="component", coords={"component": list(v)})
    ds = project(da, [2], [3], n_llms=4, n_prompts=3, n_families=2, finite=False)
    floor = 0.25 + 0.05 + 0.1 + 0.02
    error = floor + 0.2 / 2 + 0.1 / 3 + 0.06 / 6 + 0.3 / 6 + 0.04 / 2 + 0.08 / 2
    assert float(ds["floor"]) == pytest.approx(floor)
    assert float(ds["error"].sel(k=2, q=3)) == pytest.approx(error)
    with pytest.raises(ValueError, match="no rule"):
        project(da.assign_coords(component=[*list(v)[:-1], "mystery"]), [1], [1], 4, 3, 2,
                False)


def test_the_floors_share_recovers_its_truth(small_fit, small_study):
    """Finite population, every design of the data's LLMs × prompts: the share of the error
    that is floor (scale-free, so the truth's population variances compare directly), truth
    inside its 94% HDI."""
    truth = small_study.truth["error_scales"]["expert-sd"]["variances"]
    da = xr.DataArray(list(truth.values()), dims="component", coords={"component": list(truth)})
    L, P = len(small_fit.model.spec.coords["llm"]), len(small_fit.model.spec.coords["prompt"])
    F = len(small_fit.model.spec.coords["family"])
    true = project(da, range(1, L + 1), range(1, P + 1), L, P, F, finite=True)
    ds = small_fit.decision_study
    missed = []
    for k in range(1, L + 1):
        for q in range(1, P + 1):
            share = ds["finite_population_floor"] / ds["finite_population_error"].sel(k=k, q=q)
            h = hdi(share)
            t = float(true["floor"] / true["error"].sel(k=k, q=q))
            if not float(h.sel(ci_bound="lower")) <= t <= float(h.sel(ci_bound="upper")):
                missed.append((k, q, t, h.values.tolist()))
    assert not missed, missed
    # Where the paper preset has ≥ 90% of the error as floor at 2 of 4 LLMs × every prompt
    # (test_measurement_paper.py), this preset's larger per-LLM errors keep it below, and the
    # output says so too.
    assert floor_share_at(small_fit, 2) < 0.9 and true_floor_share_at(
        small_study.truth, 2, L, P, F) < 0.9
    table = small_fit.decision_table
    assert set(table.attrs["smallest"]) == {"superpopulation", "finite_population"}
    # With every LLM and prompt of the data averaged, the finite error is the floor plus the
    # per-cell terms divided by k·q: the floor's share is highest there.
    last = table[(table["llms"] == L) & (table["prompts"] == P)]
    assert float(last["finite_population_floor_share"].iloc[0]) == pytest.approx(
        table["finite_population_floor_share"].max())


def test_dstudy_command(small_fit, tmp_path):
    path = small_fit.save(tmp_path / "e1.nc")
    out = subprocess.run([sys.executable, "-m", "misalign.cli", "dstudy", str(path), "--json"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    payload = json.loads(out.stdout)
    assert payload["decision_study"] and "superpopulation" in payload[
        "smallest_within_5pct_of_floor"]
    plain = subprocess.run([sys.executable, "-m", "misalign.cli", "dstudy", str(path)],
                           capture_output=True, text=True, timeout=300)
    assert plain.returncode == 0 and "Averaging new LLMs and prompts" in plain.stdout
    bad = subprocess.run([sys.executable, "-m", "misalign.cli", "dstudy", str(tmp_path / "no.nc")],
                         capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "file not found" in bad.stderr
