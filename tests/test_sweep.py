"""E6 refits and checks: named prior sets, the same numbers serially, in a process pool and on a
Dask cluster, the prior predictive check, and the CLI."""

from __future__ import annotations

import json
import re

import pandas as pd
import pytest
from pymc_extras.prior import Prior

from misalign.inference.sweep import movement, read_prior_sets, sweep
from misalign.models.options import NAMED_SETS, SELECTION, SamplerConfig
from tests.collect_support import cli

SETTINGS = SamplerConfig(draws=300, tune=300, chains=2, seed=7, progressbar=False)


@pytest.fixture(scope="module")
def small_results(small_fit, tmp_path_factory):
    from misalign import load

    return load(small_fit.save(tmp_path_factory.mktemp("sweep") / "small.nc"))


def test_named_sets_change_the_right_priors():
    import warnings

    from misalign.data import MisalignmentData
    from misalign.models import VariancePartitionModel
    from tests.helpers import tiny_unbalanced_frame

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        data = MisalignmentData.from_frame(tiny_unbalanced_frame(0), "raw",
                                           {"T1": 1.0, "T2": 1.0, "T3": 1.0})
        budget = VariancePartitionModel(data)
        indep = VariancePartitionModel(data, prior_structure="independent")
    s = budget.priors["sigma_total"].parameters["sigma"]
    assert budget.prior_set("default") == ({}, {})
    assert budget.prior_set("wide")[0] == {"sigma_total": Prior("HalfNormal", sigma=4 * s)}
    sc = budget.prior_set("sceptical")[0]["aggregate_shares"].parameters["a"]
    assert list(sc) == [0.25] + [1.0] * (len(sc) - 1)  # attributable comes first
    assert budget.prior_set("independent") == ({}, {"prior_structure": "independent"})
    assert "independent" in budget.prior_sets() and "independent" not in indep.prior_sets()
    s = indep.priors["sigma_prompt"].parameters["sigma"]
    assert indep.prior_set("wide")[0]["sigma_prompt"] == Prior("HalfNormal", sigma=4 * s)
    assert indep.prior_set("exponential")[0]["sigma_residual"] == Prior("Exponential",
                                                                        lam=1.0 / s)
    sc = indep.prior_set("sceptical")[0]
    assert set(sc) == {f"sigma_{c.replace(':', '_')}" for c in indep.spec.components
                       if c in SELECTION}
    with pytest.raises(ValueError, match="unknown prior set"):
        indep.prior_set("nope")


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
    # The small preset's error SD lies inside the prior's 90% interval, and the budget prior
    # favours no aggregate: each prior mean is within 0.1 of 1/(number of aggregates).
    assert re.search(r"the data's SD [0-9.]+ is inside it", r.stdout), r.stdout
    means = re.search(r"Prior mean of each aggregate's share: (.*) \(neutral: 1/(\d+)", r.stdout)
    pairs = dict(p.rsplit(" ", 1) for p in means.group(1).split(", "))
    assert len(pairs) == int(means.group(2)) and "attributable" in pairs
    assert all(abs(float(v) - 1 / len(pairs)) < 0.1 for v in pairs.values()), pairs
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
    quantities = {r["quantity"] for r in payload["powerscale"]}
    assert {"aggregate:attributable (superpop)", "aggregate:attributable (finite)",
            "share:prompt (finite)", "overall bias", "total error SD"} <= quantities


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
