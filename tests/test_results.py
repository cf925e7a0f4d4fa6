"""Results files: NetCDF that ArviZ opens, and a round trip that rebuilds the model."""

import json

import arviz as az
import matplotlib
import numpy as np
import pandas as pd
import pytest
import xarray as xr

from misalign import __version__
from misalign.inference import load_results

matplotlib.use("Agg")


@pytest.fixture(scope="module")
def saved(small_fit, tmp_path_factory):
    return small_fit.save(tmp_path_factory.mktemp("res") / "results.nc")


def test_round_trip_identical_shares_and_model(small_fit, saved):
    back = load_results(saved)
    for var in small_fit.shares.data_vars:
        np.testing.assert_array_equal(back.shares[var].values, small_fit.shares[var].values)
    assert back.model.data.data_hash() == small_fit.model.data.data_hash()
    assert back.model.model is not None  # rebuilt PyMC model
    assert [v.name for v in back.model.model.free_RVs] == \
        [v.name for v in small_fit.model.model.free_RVs]
    assert back.model.priors == small_fit.model.priors
    assert back.gate.passed == small_fit.gate.passed
    pd.testing.assert_frame_equal(back.table, small_fit.table, check_dtype=False)


def test_file_carries_provenance(saved, small_fit):
    tree = az.from_netcdf(saved)
    attrs = tree.attrs
    assert json.loads(attrs["package_versions"])["misalign"] == __version__
    assert attrs["error_scale"] == "expert-sd"
    assert attrs["seed"] == "11"
    assert attrs["data_hash"] == small_fit.model.data.data_hash()
    priors = json.loads(attrs["priors"])
    assert priors["sigma_total"]["dist"] == "HalfNormal"
    assert priors["aggregate_shares"]["dist"] == "Dirichlet"
    assert json.loads(attrs["model_config"])["likelihood"] == "gaussian"
    assert {"posterior", "sample_stats", "shares", "bias", "misalignment_data",
            "diagnostics"} <= \
        set(tree.children)
    assert tree["misalignment_data"].sizes["rating"] == small_fit.model.data.n_ratings


def test_arviz_forest_plot_labels_components(saved, tmp_path):
    tree = az.from_netcdf(saved)
    comps = tree["shares"]["finite_population"]["component"].values.tolist()
    assert comps[:3] == ["llm", "family", "prompt"] and "unit:task" in comps
    pc = az.plot_forest(tree, group="shares", var_names=["finite_population"])
    labels = pc.viz["component_label"]["finite_population"]
    assert [labels.sel(component=c).item().get_text() for c in comps] == comps
    pc.savefig(tmp_path / "forest.png")
    # Posterior effects carry real labels too, the within-family contrasts included.
    assert tree["posterior"]["llm_effect"]["llm"].values.tolist() == \
        sorted(tree["posterior"]["llm_effect"]["llm"].values.tolist())
    contrasts = tree["posterior"]["llm_within_family"]["llm_contrast"].values.tolist()
    assert contrasts and all(": " in c and " vs " in c for c in contrasts)
    diag = tree["diagnostics"]
    assert "quantity" in diag.dims and "finite_population[llm]" in diag["quantity"].values


def test_posterior_and_prior_predictive(small_fit):
    pp = small_fit.model.sample_posterior_predictive(draws=20, seed=1)
    y = pp["posterior_predictive"]["error"]
    assert y.sizes["rating"] == small_fit.model.data.n_ratings
    obs = small_fit.model.data.error
    # A replication under the fitted model has the data's overall spread.
    assert float(y.std()) == pytest.approx(obs.std(), rel=0.1)
    prior = small_fit.model.sample_prior_predictive(draws=20, seed=1)
    assert np.isfinite(prior["prior_predictive"]["error"].values).all()


def test_atomic_write_keeps_normal_permissions(tmp_path):
    import os

    from misalign.data.atomic import atomic_write_text

    p = atomic_write_text(tmp_path / "x.txt", "hello")
    umask = os.umask(0)
    os.umask(umask)
    assert (p.stat().st_mode & 0o777) == (0o666 & ~umask)
    assert p.read_text() == "hello" and list(tmp_path.iterdir()) == [p]


def test_bias_group_tables_and_an_independent_check(small_fit, saved):
    """The size of the drift: in the results file, the tables and --json; in a balanced design
    each LLM's (and prompt's) bias is the mean error of its ratings, computed here from the
    data alone."""
    from misalign.inference.bias import BIAS_VARS

    bias = az.from_netcdf(saved)["bias"].to_dataset()
    assert set(BIAS_VARS) <= set(bias.data_vars)
    data = small_fit.model.data
    scale = xr.DataArray([data.task_scale[t] for t in bias["task"].values], dims="task",
                         coords={"task": bias["task"].values})
    np.testing.assert_allclose(bias["task_bias_points"].values,
                               (bias["task_bias"] * scale).transpose(*bias["task_bias_points"].dims)
                               .values, rtol=1e-12)
    payload = small_fit.to_dict()
    ranked = pd.DataFrame(payload["bias"])
    assert set(ranked["effect"]) == {"LLM", "prompt", "LLM × prompt"}
    assert len(pd.DataFrame(payload["task_bias"])) == len(bias["task"])
    # Ranks run by |mean| within each effect.
    for _, g in ranked.groupby("effect"):
        assert list(g.sort_values("rank")["bias_mean"].abs()) == \
            sorted(g["bias_mean"].abs())
    frame = pd.DataFrame({"error": data.error, "llm": np.asarray(data.labels["llm"])[data.llm],
                          "prompt": np.asarray(data.labels["prompt"])[data.prompt]})
    rows = ranked.set_index(["effect", "level"])
    for effect, column in (("LLM", "llm"), ("prompt", "prompt")):
        for level, mean in frame.groupby(column)["error"].mean().items():
            row = rows.loc[(effect, level)]
            assert row["bias_lower"] <= mean <= row["bias_upper"], (effect, level, mean)
    # In rubric points: the mean over tasks of each task's mean error times its scale.
    frame["task"] = np.asarray(data.labels["task"])[data.task]
    frame["points"] = frame["error"] * frame["task"].map(data.task_scale)
    by_task = frame.groupby(["llm", "task"])["points"].mean().groupby("llm").mean()
    for level, mean in by_task.items():
        row = rows.loc[("LLM", level)]
        assert row["points_lower"] <= mean <= row["points_upper"], (level, mean)
    overall = float(bias["overall_bias"].mean())
    assert overall == pytest.approx(frame["error"].mean(), abs=0.05)
    # The total error SD is that of one rating about the overall bias for these LLMs and
    # prompts: the data's own SD.
    sd = bias["total_error_sd"].values
    assert np.quantile(sd, 0.03) <= frame["error"].std() <= np.quantile(sd, 0.97)


def test_prior_overlap_against_closed_forms_and_the_flag(small_fit):
    """The overlap coefficient of two normals on the logit scale is 2Φ(−|Δμ|/2σ); the table
    flags exactly the superpopulation shares whose overlap is above the threshold."""
    from scipy.special import expit
    from scipy.stats import norm

    from misalign.inference.prior_overlap import MOSTLY_PRIOR, overlap

    rng = np.random.default_rng(0)
    for shift in (0.0, 1.0, 3.0):
        a = expit(rng.normal(-2.0, 1.0, 20000))
        b = expit(rng.normal(-2.0 + shift, 1.0, 20000))
        assert overlap(a, b) == pytest.approx(2 * norm.cdf(-shift / 2), abs=0.03)
    tab = small_fit.table
    assert tab["super_prior_overlap"].between(0, 1).all()
    assert (tab["mostly_prior"] == (tab["super_prior_overlap"] > MOSTLY_PRIOR)).all()
    assert (tab.loc[tab["mostly_prior"], "note"].str.contains("read finite-pop")).all()
    assert (tab.loc[~tab["mostly_prior"], "note"] == "").all()
    # The data pin attributable down: its posterior has left the prior.
    agg = tab[tab["kind"] == "aggregate"].set_index("name")
    assert not agg.loc["attributable", "mostly_prior"]
