"""The compiled fast path (models/kernels.py, e1_kernels.py) is the PyMC model: the same log
density and gradient at random points, for every likelihood form and every prior it accepts,
and the same posterior variables; what it does not cover falls back to PyMC."""

import warnings

import numpy as np
import pytensor.scalar as ps
import pytensor.tensor as pt
import pytest
from pymc_extras.prior import Prior
from pytensor.compile.mode import Mode
from pytensor.graph.rewriting.basic import in2out, node_rewriter
from pytensor.graph.rewriting.utils import rewrite_graph
from pytensor.tensor.elemwise import Elemwise

from misalign.data import MisalignmentData, build_misalignment
from misalign.models import VariancePartitionModel
from misalign.models.fast_e1 import pack_e1
from misalign.models.likelihood import e1_stats
from tests.helpers import free_point, tiny_unbalanced_frame


def _tiny(seed: int, tasks=("T1", "T2", "T3")) -> MisalignmentData:
    frame = tiny_unbalanced_frame(seed)
    frame = frame[frame["task"].isin(tasks)]
    return MisalignmentData.from_frame(frame, "raw", dict.fromkeys(tasks, 1.0))


def _refold(model: VariancePartitionModel, grouped: bool) -> None:
    """Rebuild the PyMC model's sufficient statistics in the per-cell or the folded form."""
    model._stats = e1_stats(model.spec, model.data, grouped=grouped)
    assert (model._stats.grouped is not None) == grouped


@node_rewriter([Elemwise])
def _split_adds(fgraph, node):
    """numpy ufuncs take at most 32 operands: the gradient's sums of many contributions are
    split for the Python linker (the same sum)."""
    if isinstance(node.op.scalar_op, ps.Add) and len(node.inputs) > 32:
        parts = [pt.add(*node.inputs[i:i + 16]) for i in range(0, len(node.inputs), 16)]
        return [pt.add(*parts)]
    return None


def _check_equal(model: VariancePartitionModel, n_points: int = 3) -> None:
    """Both kernel forms of the cell level: per cell and folded into patterns."""
    pm_model = model.build_model()
    packs = [pack_e1(model, model.sufficient_stats(), fold=fold) for fold in (False, True)]
    for fast, why in packs:
        assert fast is not None, why
    assert _folds(packs) == [False, True]
    _compare(pm_model, [fast for fast, _ in packs], n_points)


def _folds(packs) -> list[bool]:
    from misalign.models import kernels as kk

    return [bool(fast.Z[kk.H_FOLD] > 0) for fast, _ in packs]


def _compare(pm_model, packs, n_points: int) -> None:
    """Value and gradient of the kernels (each of ``packs``) against the PyMC model at random
    points."""
    from misalign.models.e1_kernels import e1_logp_grad
    from misalign.models.student_kernels import H_STUDENT, e1_student_logp_grad

    # The Python linker without rewrites: the graph exactly as written, nothing compiled.
    mode = Mode(linker="py", optimizer=None)
    logp = pm_model.compile_logp(mode=mode)
    dlogp = pm_model.compile_fn(rewrite_graph(pm_model.dlogp(), include=(),
                                              custom_rewrite=in2out(_split_adds)), mode=mode)
    rng = np.random.default_rng(0)
    fast = packs[0]
    grad = np.zeros(fast.n_dim)
    for _ in range(n_points):
        x = rng.normal(0.0, 0.7, fast.n_dim)
        point = free_point(fast, x)
        ref, dref = float(logp(point)), np.asarray(dlogp(point))
        for fast in packs:
            kernel = e1_student_logp_grad if fast.Z[H_STUDENT] > 0 else e1_logp_grad
            lp = kernel(x, fast.F, fast.Z, grad)
            assert abs(lp - ref) <= 1e-8 * max(1.0, abs(ref)), (lp, ref)
            np.testing.assert_allclose(grad, dref, rtol=1e-8,
                                       atol=1e-8 * np.abs(dref).max())


@pytest.fixture(scope="module")
def small_data(small_study):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return build_misalignment(small_study.table())


@pytest.mark.parametrize("form", ["grouped", "per-cell"])
@pytest.mark.parametrize("structure", ["budget", "independent"])
def test_small_preset_equals_pymc(small_data, form, structure):
    """Balanced: two sub-levels at pattern cost (llm×unit×task, lineage), the reference's
    offsets, per-task residuals, the three-way effect non-centred."""
    model = VariancePartitionModel(small_data, prior_structure=structure)
    _refold(model, grouped=form == "grouped")
    assert len(model.sufficient_stats().tables) == 3
    _check_equal(model)


@pytest.mark.parametrize("seed", [3, 7])
def test_unbalanced_leaves_equal_pymc(seed):
    """Unequal sub-cells (the finest nodes as cells, every level above them in the tree),
    missing ratings, replicates."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        model = VariancePartitionModel(_tiny(seed))
    _check_equal(model)


def test_one_task_equals_pymc():
    """One residual group, no per-task residual spread (no τ)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        model = VariancePartitionModel(_tiny(5, tasks=("T2",)))
    assert len(model.spec.coords["task"]) == 1
    _check_equal(model)


@pytest.mark.parametrize("priors", [
    {"sigma_total": Prior("HalfStudentT", nu=3.0, sigma=2.0),
     "intercept": Prior("StudentT", nu=4.0, mu=0.1, sigma=1.5)},
    {"sigma_total": Prior("Exponential", lam=0.7), "tau_residual": Prior("Gamma", alpha=2.0,
                                                                          beta=3.0)},
    {"sigma_total": Prior("LogNormal", mu=0.0, sigma=1.0),
     "tau_residual": Prior("InverseGamma", alpha=3.0, beta=1.0),
     "intercept": Prior("Cauchy", alpha=0.0, beta=2.0)},
], ids=["halfstudentt", "exponential-gamma", "lognormal-invgamma"])
def test_other_priors_equal_pymc(priors):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        model = VariancePartitionModel(_tiny(2), priors=priors)
        a = model.priors["aggregate_shares"].parameters["a"]
        model = model.with_priors({"aggregate_shares": Prior(
            "Dirichlet", a=np.linspace(0.8, 2.0, len(a)), dims="aggregate")})
    _check_equal(model, n_points=2)


def test_independent_sigmas_with_the_named_sets_equal_pymc():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        model = VariancePartitionModel(_tiny(4), prior_structure="independent")
        model = model.with_priors({"sigma_llm": Prior("HalfCauchy", beta=0.5),
                                   "sigma_unit": Prior("Exponential", lam=2.0),
                                   "sigma_residual": Prior("HalfStudentT", nu=3.0, sigma=1.0)})
    _check_equal(model, n_points=2)


@pytest.mark.parametrize("source", ["tiny", "small"])
def test_student_t_equals_pymc(small_data, source):
    """The fused Student-t pass: ratings t(ν, rest + b_c, σ_task), the cell latents' nested
    prior around intercept + task effect + reference offset, ν − 2's prior; the small preset
    has the reference's offsets and per-task residuals, the tiny one unequal cells."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        data = small_data if source == "small" else _tiny(8)
        model = VariancePartitionModel(data, likelihood="student")
        pm_model = model.build_model()
    fast, why = pack_e1(model, None)
    assert fast is not None, why
    _compare(pm_model, [fast], n_points=3)


def test_student_t_trace_keeps_the_residual_not_the_latents():
    from misalign.models.fast_e1 import RESIDUAL_MEAN_SQUARE
    from misalign.models.predictive import student_residual_mean_square
    from misalign.models.student_kernels import e1_student_expand

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        model = VariancePartitionModel(_tiny(8), likelihood="student")
        model.build_model()
    fast, _ = pack_e1(model, None)
    kept, _ = pack_e1(model, None, keep_cell_means=True)
    assert "cell_mean" not in fast.trace_names and "cell_mean" in kept.trace_names
    assert RESIDUAL_MEAN_SQUARE in fast.trace_names
    x = np.random.default_rng(2).normal(0, 0.5, fast.n_dim)
    sizes = [int(np.prod(s)) for s in kept.trace_shapes]
    out = np.zeros(sum(sizes))
    e1_student_expand(x, kept.F, kept.Z, out)
    at = np.cumsum([0, *sizes])
    post = {name: out[at[i]:at[i + 1]].reshape(1, 1, *shape) for i, (name, shape) in
            enumerate(zip(kept.trace_names, kept.trace_shapes, strict=True))}
    import xarray as xr

    ds = xr.Dataset({name: xr.DataArray(v, dims=("chain", "draw", *(
        model.model.named_vars_to_dims.get(name, ())))) for name, v in post.items()})
    expected = student_residual_mean_square(model, ds)
    np.testing.assert_allclose(post[RESIDUAL_MEAN_SQUARE].ravel(), expected, rtol=1e-10)


def test_a_prior_without_a_kernel_falls_back_to_pymc():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        model = VariancePartitionModel(_tiny(4), prior_structure="independent",
                                       priors={"sigma_llm": Prior("Weibull", alpha=2.0,
                                                                  beta=1.0)})
    fast, why = pack_e1(model, model.sufficient_stats())
    assert fast is None and "sigma_llm" in why and "Weibull" in why
    assert model.fast_path() is None


def test_the_trace_has_the_pymc_models_variables_and_dims():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        model = VariancePartitionModel(_tiny(3))
        pm_model = model.build_model()
    fast, _ = pack_e1(model, model.sufficient_stats())
    expected = [v.name for v in pm_model.value_vars] + [
        v.name for v in pm_model.unobserved_value_vars
        if v.name not in {w.name for w in pm_model.value_vars}]
    assert fast.trace_names == expected
    for name, shape in zip(fast.trace_names, fast.trace_shapes, strict=True):
        dims = pm_model.named_vars_to_dims.get(name, ())
        assert shape == tuple(len(pm_model.coords[d]) for d in dims)


@pytest.mark.parametrize("source", ["small", "tiny"])
def test_compiled_pointwise_likelihood_equals_numpy(small_data, source):
    """Per top-level node and draw, with offsets, residual groups and leaves below the cells;
    scalar variances (E1) and per-node ones (the G-study's form); leaf by leaf and folded."""
    from misalign.models.likelihood import CellLeaves

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        data = small_data if source == "small" else _tiny(6)
        spec = VariancePartitionModel(data).spec
    chain, K = spec.chain, len(spec.coords["task"])
    node_cell = np.zeros(int(chain.leaves.max()) + 1, dtype=np.int64)
    node_cell[chain.leaves] = data.cell
    w = spec.reference_weights
    leaves = CellLeaves.from_arrays(
        data.error, spec.design, spec.n_design, chain.leaves, chain.leaf_parents,
        design_group=spec.design_task if K > 1 else None,
        cell_offset=None if w is None else w[node_cell])
    rng = np.random.default_rng(1)
    n = 7
    f = rng.normal(0, 0.3, (n, spec.n_design))
    s2c = rng.uniform(0.1, 1, (n, 1))
    s2e = rng.uniform(0.2, 1, (n, K))
    lev = {name: rng.uniform(0.05, 0.5, (n, 1)) for name, _ in chain.leaf_parents}
    off = None if w is None else rng.normal(0, 0.2, (n, w.shape[1]))
    ref = leaves.logp(f, s2c, s2e, lev, off)
    for form in ("leaves", "folded"):
        np.testing.assert_allclose(leaves.logp_compiled(f, s2c, s2e, lev, off, form=form), ref,
                                   rtol=1e-10, atol=1e-8)
    # one variance per node, as the G-study passes them
    per_node = {name: np.repeat(v, int(idx.max()) + 1, axis=1)
                for (name, idx), v in zip(chain.leaf_parents, lev.values(), strict=True)}
    per_leaf = np.repeat(s2c, len(leaves.cell_n), axis=1)
    ref = leaves.logp(f, per_leaf, s2e, per_node, off)
    for form in ("leaves", "folded"):
        np.testing.assert_allclose(leaves.logp_compiled(f, per_leaf, s2e, per_node, off,
                                                        form=form),
                                   ref, rtol=1e-10, atol=1e-8)


@pytest.mark.parametrize("facets", [(), ("school",)], ids=["teacher", "school"])
def test_gstudy_equals_pymc(facets):
    """The independent Gaussian G-study: dimensions stacked as residual groups, lessons as
    cells with their dimension's variance, teachers (and schools) with theirs."""
    from misalign.data.simulate_experts import simulate_experts
    from misalign.models.fast_gstudy import pack_gstudy
    from misalign.models.gstudy import GStudyModel

    ratings, _ = simulate_experts(n_teachers=12, lessons=3, segments=3, n_raters=5,
                                  dimensions=("A", "B", "C"), seed=3)
    f = ratings.frame.sample(frac=0.8, random_state=1)  # unequal cells, missing ratings
    if facets:
        f["school"] = "s" + (f["teacher"].str[1:].astype(int) % 4).astype(str)
    model = GStudyModel(type(ratings)(f.reset_index(drop=True), "t", {}, []), facets=facets,
                        priors={"sigma_rater": Prior("HalfStudentT", nu=3.0, sigma=0.5)})
    pm_model = model.build_model()
    packs = [pack_gstudy(model, fold=fold) for fold in (False, True)]
    for fast, why in packs:
        assert fast is not None, why
    assert _folds(packs) == [False, True]
    _compare(pm_model, [fast for fast, _ in packs], n_points=3)


def test_the_switch_turns_the_fast_path_off(monkeypatch):
    from misalign.models.fast_sampler import ENV_SWITCH, enabled

    monkeypatch.delenv(ENV_SWITCH, raising=False)
    assert enabled()
    monkeypatch.setenv(ENV_SWITCH, "0")
    assert not enabled()


def test_a_gaussian_fit_does_not_compile_the_student_kernels():
    """The first fit after an install compiles only what its likelihood needs."""
    import subprocess
    import sys

    code = ("import sys, misalign.models.e1_callbacks; "
            "assert 'misalign.models.student_kernels' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)
