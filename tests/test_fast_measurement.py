"""The joint measurement model's compiled kernels (models/measurement_*.py) against its PyMC
model: log density and gradient at random points for every form of the model (sub-cell
latents, centred and non-centred effects, value-added, unbalanced designs), the 2×2 node
integral's reverse pass against finite differences, the trace, and a restart on the kernels."""

import warnings
from dataclasses import replace

import numpy as np
import pandas as pd
import pytensor.scalar as ps
import pytensor.tensor as pt
import pytest
from pymc_extras.prior import Prior
from pytensor.compile.mode import Mode
from pytensor.graph.rewriting.basic import in2out, node_rewriter
from pytensor.graph.rewriting.utils import rewrite_graph
from pytensor.tensor.elemwise import Elemwise

from misalign.data.measurement import build_measurement
from misalign.data.simulate import PRESETS, simulate
from misalign.models.fast_measurement import pack_measurement
from misalign.models.measurement import MeasurementModel
from misalign.models.options import SamplerConfig
from tests.helpers import free_point


@node_rewriter([Elemwise])
def _split_wide(fgraph, node):
    """Sums of more than 31 terms in pieces (the Python linker's limit on operands)."""
    if isinstance(node.op.scalar_op, ps.Add) and len(node.inputs) > 16:
        parts = [pt.add(*node.inputs[i:i + 16]) for i in range(0, len(node.inputs), 16)]
        return [pt.add(*parts)]
    return None


@pytest.fixture(scope="module")
def study():
    return simulate(replace(PRESETS["small"], seed=1002))


def _data(study, drop: float = 0.0, value_added: bool = True, seed: int = 0,
          again: float = 0.0):
    table = study.table()
    rng = np.random.default_rng(seed)
    r = table.ratings
    if drop:  # an unbalanced design: some LLM and expert ratings missing
        r = r[rng.uniform(size=len(r)) >= drop].reset_index(drop=True)
    if again:  # some LLM ratings given twice (a second replicate, another score)
        llm = r[(r["rater_kind"] == "llm") & (rng.uniform(size=len(r)) < again)].copy()
        llm["replicate"] = llm["replicate"].astype(int) + 1
        llm["score"] = llm["score"].where(llm["score"] <= llm["score"].min(), llm["score"] - 1)
        r = pd.concat([r, llm], ignore_index=True)
    table = replace(table, ratings=r)
    teachers = study.teachers if value_added else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return build_measurement(table, teachers, study.llms)


def _check(model: MeasurementModel, n_points: int = 3) -> None:
    pm_model = model.build_model()
    fast, why = pack_measurement(model)
    assert fast is not None, why
    from misalign.models.measurement_head import measurement_logp

    mode = Mode(linker="py", optimizer=None)
    split = in2out(_split_wide)
    logp = pm_model.compile_fn(rewrite_graph(pm_model.logp(), include=(), custom_rewrite=split),
                               mode=mode)
    dlogp = pm_model.compile_fn(rewrite_graph(pm_model.dlogp(), include=(),
                                              custom_rewrite=split), mode=mode)
    rng = np.random.default_rng(1)
    grad = np.zeros(fast.n_dim)
    for k in range(n_points):
        x = fast.init + (rng.normal(0.0, 0.5, fast.n_dim) if k else 0.0)
        point = free_point(fast, x)
        ref, dref = float(logp(point)), np.asarray(dlogp(point))
        lp = measurement_logp(x, fast.F, fast.Z, grad)
        assert abs(lp - ref) <= 1e-8 * max(1.0, abs(ref)), (lp, ref)
        np.testing.assert_allclose(grad, dref, rtol=1e-8, atol=1e-8 * np.abs(dref).max())


def test_small_preset_equals_pymc(study):
    """Both sub-cell latents, value-added, non-centred loadings and noise."""
    model = MeasurementModel(_data(study))
    assert model.sub_levels == ["llm_cell", "lineage"] and model.data.has_value_added
    _check(model)


def test_centred_effects_equal_pymc(study):
    model = MeasurementModel(_data(study))
    model.centred_terms = frozenset({"mu", "lambda", "log_noise", "rater"})
    _check(model, n_points=2)


@pytest.mark.parametrize("sub", [[], ["llm_cell"], ["lineage"]])
def test_unbalanced_design_and_sub_levels_equal_pymc(study, sub):
    """Missing ratings (many count patterns, cells without experts), no value-added."""
    model = MeasurementModel(_data(study, drop=0.3, value_added=False))
    model.sub_levels = sub
    _check(model, n_points=2)


def test_replicated_ratings_equal_pymc(study):
    """Some (cell, source) pairs rated twice: counts above one, more count patterns."""
    _check(MeasurementModel(_data(study, again=0.2, seed=4)), n_points=2)


def test_other_priors_equal_pymc(study):
    priors = {"sigma_expert": Prior("Exponential", lam=2.0),
              "lambda_mean": Prior("LogNormal", mu=0.0, sigma=0.3),
              "va_rho_shared": Prior("Uniform", lower=-0.9, upper=0.9),
              "sigma_quality_cell": Prior("HalfStudentT", nu=3.0, sigma=0.5)}
    _check(MeasurementModel(_data(study), priors=priors), n_points=2)


def test_a_prior_without_a_kernel_falls_back_to_pymc(study):
    model = MeasurementModel(_data(study), priors={"va_rho_shared": Prior("Beta", alpha=2.0,
                                                                          beta=2.0)})
    fast, why = pack_measurement(model)
    assert fast is None and "va_rho_shared" in why
    assert model.fast_path() is None


def test_node_integral_reverse_pass_against_finite_differences():
    from misalign.models.measurement_kernels import integrate, integrate_back

    rng = np.random.default_rng(3)
    for _ in range(20):
        J11, J22 = rng.uniform(0.1, 3.0, 2)
        J12 = rng.uniform(-1, 1) * np.sqrt(J11 * J22)
        args = np.array([J11, J12, J22, *rng.normal(0, 2, 2), *rng.uniform(0.05, 2.0, 2)])
        g = rng.normal(size=6)
        back = np.array(integrate_back(*args, *g))
        eps = 1e-6
        for j in range(7):
            up, down = args.copy(), args.copy()
            up[j] += eps
            down[j] -= eps
            fd = (np.dot(g, integrate(*up)) - np.dot(g, integrate(*down))) / (2 * eps)
            assert abs(fd - back[j]) <= 1e-6 * max(1.0, abs(fd)), (j, fd, back[j])


def test_the_trace_has_the_pymc_models_variables_and_dims(study):
    model = MeasurementModel(_data(study))
    pm_model = model.build_model()
    fast, _ = pack_measurement(model)
    expected = [v.name for v in pm_model.value_vars] + [
        v.name for v in pm_model.unobserved_value_vars
        if v.name not in {w.name for w in pm_model.value_vars}]
    assert fast.trace_names == expected
    rv_of = {pm_model.rvs_to_values[rv].name: rv.name for rv in pm_model.free_RVs}
    for name, shape in zip(fast.trace_names, fast.trace_shapes, strict=True):
        dims = pm_model.named_vars_to_dims.get(rv_of.get(name, name), ())
        assert shape == tuple(len(pm_model.coords[d]) for d in dims)


def test_a_fit_on_the_kernels_and_a_restart_on_them(study):
    """The kernels drive nutpie (the trace's values equal the PyMC model's deterministics at
    the same draw), and a chain far below the best is sampled again on them, not compiled."""
    model = MeasurementModel(_data(study))
    idata = model.fit(draws=30, tune=30, chains=2, seed=3, progressbar=False)
    assert model.fit_config["timing"].get("fast_path")
    post = idata["posterior"].to_dataset()
    draw = post.isel(chain=0, draw=-1)
    m = model.model
    fn = m.compile_fn([m["lambda_source"], m["mu_source"], m["va_rho_quality"]],
                      inputs=m.free_RVs, on_unused_input="ignore")
    got = fn({rv.name: draw[rv.name].values for rv in m.free_RVs})
    for name, value in zip(("lambda_source", "mu_source", "va_rho_quality"), got, strict=True):
        np.testing.assert_allclose(draw[name].values, value, rtol=1e-10)
    ss = idata["sample_stats"].to_dataset()
    ss["logp"][1] = ss["logp"][0] - 1000.0
    idata["sample_stats"] = ss
    cfg = SamplerConfig.make(None, draws=30, tune=30, chains=2, seed=3, progressbar=False)
    out = model.after_sampling(idata, cfg.resolved(model.default_target_accept))
    assert model.fit_config["restarts"]["restarted_chains"] == [1]
    assert model.fit_config["timing"]["restart_s"] > 0
    assert out["posterior"].sizes["chain"] == 2
