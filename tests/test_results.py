"""Results files: NetCDF that ArviZ opens, and a round trip that rebuilds the model."""

import json

import arviz as az
import matplotlib
import numpy as np
import pandas as pd
import pytest

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
    assert {"posterior", "sample_stats", "shares", "misalignment_data", "diagnostics"} <= \
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
