"""E6 refits and checks: named prior sets, the same numbers serially, in a process pool and on a
Dask cluster, the prior predictive check, and the CLI."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from pymc_extras.prior import Prior

from misalign.inference.sweep import (
    NAMED_SETS,
    movement,
    named_overrides,
    read_prior_sets,
    sweep,
)
from misalign.models.options import SamplerConfig
from tests.collect_support import cli

SETTINGS = SamplerConfig(draws=300, tune=300, chains=2, seed=7, progressbar=False)


@pytest.fixture(scope="module")
def small_results(small_fit, tmp_path_factory):
    from misalign import load

    return load(small_fit.save(tmp_path_factory.mktemp("sweep") / "small.nc"))


def test_named_sets_change_the_right_priors():
    sigmas = {"sigma_prompt": Prior("HalfNormal", sigma=0.8),
              "sigma_residual": Prior("HalfNormal", sigma=0.8)}
    assert named_overrides("default", sigmas, {"sigma_prompt"}) == {}
    wide = named_overrides("wide", sigmas, {"sigma_prompt"})
    assert wide["sigma_prompt"].parameters["sigma"] == pytest.approx(3.2)
    assert named_overrides("exponential", sigmas)["sigma_residual"] == Prior("Exponential",
                                                                             lam=1.25)
    sc = named_overrides("sceptical", sigmas, {"sigma_prompt"})
    assert sc == {"sigma_prompt": Prior("HalfNormal", sigma=0.2)}
    with pytest.raises(ValueError, match="unknown prior set"):
        named_overrides("nope", sigmas)


def test_user_sets_from_toml(tmp_path):
    p = tmp_path / "sets.toml"
    p.write_text('[tight_prompt.sigma_prompt]\ndistribution = "HalfNormal"\nsigma = 0.05\n')
    assert read_prior_sets(p) == {"tight_prompt": {"sigma_prompt": {
        "distribution": "HalfNormal", "sigma": 0.05}}}
    p.write_text('[bad]\nsigma = 1\n')
    with pytest.raises(ValueError, match="one table per prior"):
        read_prior_sets(p)


def test_prior_check_and_power_scaling_cli(small_results, tmp_path):
    r = cli("prior-check", str(small_results.path), "--out", str(tmp_path / "pc.png"),
            env={"COLUMNS": "150"})
    assert r.returncode == 0, r.stderr
    assert "aggregate:attributable" in r.stdout and (tmp_path / "pc.png").stat().st_size > 0
    r = cli("sensitivity", str(small_results.path), "--sets", "default", "--draws", "100",
            "--tune", "100", "--chains", "2", "--out", str(tmp_path / "sens"),
            env={"COLUMNS": "150"})
    assert r.returncode == 0, r.stderr
    assert "power-scaling sensitivity" in r.stdout and "prompt" in r.stdout
    table = pd.read_csv(tmp_path / "sens" / "sweep.csv")
    assert set(table["quantity"]) >= {"attributable", "shared", "task", "residual"}
    assert (tmp_path / "sens" / "sweep.png").exists()
    assert f"powerscale: {tmp_path / 'sens' / 'powerscale.csv'}" in r.stdout
    # Recorded in the results file, so that the report shows it.
    from misalign import load

    back = load(small_results.path)
    assert set(back.sensitivity) == {"powerscale", "sweep"}
    assert "sensitivity" in [s.key for s in back.report_sections()]
    j = cli("sensitivity", str(small_results.path), "--no-refit", "--no-record", "--json",
            "--out", str(tmp_path / "ps"))
    assert j.returncode == 0, j.stderr
    payload = json.loads(j.stdout)
    assert payload["files"] == {"powerscale": str(tmp_path / "ps" / "powerscale.csv")}
    assert {r["component"] for r in payload["powerscale"]} >= {"prompt", "residual"}


@pytest.mark.slow
def test_sweep_is_identical_serially_in_processes_and_on_dask(small_results):
    from distributed import Client, LocalCluster

    # Compile every set's graph once: a graph's first compile (numba, cold cache) can differ
    # from its cached form in the last bits, which NUTS then amplifies.
    sweep(small_results, list(NAMED_SETS), sampling=SamplerConfig.make(SETTINGS, draws=10,
                                                                       tune=10))
    serial = sweep(small_results, list(NAMED_SETS), sampling=SETTINGS)
    assert list(dict.fromkeys(serial["prior_set"])) == list(NAMED_SETS)
    pool = sweep(small_results, list(NAMED_SETS), sampling=SETTINGS, workers=2)
    pd.testing.assert_frame_equal(serial, pool, check_exact=True)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster, Client(cluster):
        dask = sweep(small_results, list(NAMED_SETS), sampling=SETTINGS,
                     scheduler=cluster.scheduler_address)
    pd.testing.assert_frame_equal(serial, dask, check_exact=True)
    mv = movement(serial).set_index("quantity")
    assert (mv["range"] >= 0).all()
