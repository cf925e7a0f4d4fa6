"""Both samplers run the same model definition and give the same answer on tiny data."""

import warnings

import numpy as np
import pytest

from misalign.data import MisalignmentData
from misalign.inference import compute_shares, fit_e1
from tests.helpers import tiny_unbalanced_frame


@pytest.fixture(scope="module")
def tiny():
    frame = tiny_unbalanced_frame(seed=4, drop=0.1)
    return MisalignmentData.from_frame(frame, "raw", {"T1": 1.0, "T2": 1.0, "T3": 1.0})


def _fit(data, sampler):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fit_e1(data, sampler=sampler, draws=300, tune=300, chains=2, seed=1,
                      progressbar=False)


@pytest.fixture(scope="module")
def nutpie_fit(tiny):
    return _fit(tiny, "nutpie")


def test_pymc_and_nutpie_agree(tiny, nutpie_fit):
    a, b = _fit(tiny, "pymc"), nutpie_fit
    assert a.model.fit_config["sampler"] == "pymc"
    # nutpie runs the compiled kernels, PyMC's NUTS the PyMC graph: the same posterior
    assert b.model.fit_config["timing"].get("fast_path") is True
    assert "fast_path" not in a.model.fit_config["timing"]
    for res in (a, b):
        assert set(res.shares["finite_population"]["component"].values) >= {"llm", "residual"}
        np.testing.assert_allclose(res.shares["superpopulation"].sum("component"), 1.0)
    # Pure noise data: the residual dominates under either sampler.
    ra = float(a.shares["finite_population"].sel(component="residual").mean())
    rb = float(b.shares["finite_population"].sel(component="residual").mean())
    assert ra == pytest.approx(rb, abs=0.08) and ra > 0.4
    again = compute_shares(a.model)
    np.testing.assert_array_equal(again["finite_population"].values,
                                  a.shares["finite_population"].values)


def test_numpyro_runs_the_same_model(tiny, nutpie_fit):
    """The JAX backend samples the same PyMC model (on the CPU here, a GPU where present)."""
    c, b = _fit(tiny, "numpyro"), nutpie_fit
    assert c.model.fit_config["sampler"] == "numpyro"
    assert c.model.fit_config["timing"]["platform"] in ("cpu", "gpu", "cuda")
    np.testing.assert_allclose(c.shares["superpopulation"].sum("component"), 1.0)
    rc = float(c.shares["finite_population"].sel(component="residual").mean())
    rb = float(b.shares["finite_population"].sel(component="residual").mean())
    assert rc == pytest.approx(rb, abs=0.08)
    assert b.model.fit_config["timing"]["compile_s"] > 0


def test_unknown_sampler_is_refused(tiny):
    with pytest.raises(ValueError, match="sampler must be one of"):
        fit_e1(tiny, sampler="stan", draws=10, tune=10)
