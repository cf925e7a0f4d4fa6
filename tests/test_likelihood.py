"""The marginalised Gaussian likelihood equals the dense multivariate normal (LIKELIHOOD.md)."""

import warnings

import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest
from pytensor.graph.replace import graph_replace

from misalign.data import MisalignmentData
from misalign.models import SufficientStats, VariancePartitionModel, gaussian_marginal_logp
from misalign.models.likelihood import cell_prior_logp, dense_gaussian_logp
from misalign.models.recursion import np_segment_sum, pt_segment_sum
from misalign.models.spec import make_spec
from tests.helpers import tiny_unbalanced_frame


def _data(seed):
    frame = tiny_unbalanced_frame(seed)
    return MisalignmentData.from_frame(frame, "raw", {"T1": 1.0, "T2": 1.0, "T3": 1.0})


def _groups(data, spec, s2):
    """Labels of every nested level for each rating, with that level's variance."""
    node = data.cell.copy()
    groups = [(node.copy(), s2["unit:task"])]
    for name, idx in spec.levels:
        node = idx[node]
        groups.append((node.copy(), s2[name]))
    return groups


@pytest.mark.parametrize("grouped", [False, True], ids=["per-cell", "grouped"])
@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_marginal_equals_dense(seed, grouped):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        data = _data(seed)
        spec = make_spec(data)
    rng = np.random.default_rng(100 + seed)
    f = rng.normal(size=spec.n_design)
    s2 = {"unit:task": 0.4, "unit": 0.3, "transcript": 0.2, "teacher": 0.5}
    s2_res = 0.7
    stats = SufficientStats.from_arrays(data.error, spec.design, spec.n_design, data.cell,
                                        spec.levels, grouped=grouped)
    assert (stats.grouped is not None) == grouped
    assert stats.cell.patterns.shape[0] > 3  # incomplete cells exercise their own patterns
    levels = {n: s2[n] for n, _ in spec.levels}
    fast = gaussian_marginal_logp(stats, f, s2["unit:task"], s2_res, levels)
    dense = dense_gaussian_logp(data.error, f[spec.design], _groups(data, spec, s2), s2_res)
    assert fast == pytest.approx(dense, abs=1e-8, rel=1e-12)

    ft = pt.dvector("f")
    expr = gaussian_marginal_logp(stats, ft, s2["unit:task"], s2_res, levels, xp=pt,
                                  segsum=pt_segment_sum)
    assert float(pytensor.function([ft], expr)(f)) == pytest.approx(dense, abs=1e-8)
    # The gradient exists and is finite (the sampler needs it).
    grad = pytensor.function([ft], pytensor.grad(expr, ft))(f)
    assert np.all(np.isfinite(grad))


def test_cell_prior_equals_dense():
    """Student-t model: the prior of explicit cell totals integrates unit/transcript/teacher."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        data = _data(5)
        spec = make_spec(data)
    n_cells = int(data.cell.max()) + 1
    b = np.random.default_rng(3).normal(size=n_cells)
    s2 = {"unit": 0.3, "transcript": 0.2, "teacher": 0.5}
    node = np.arange(n_cells)
    groups = []
    for name, idx in spec.levels:
        node = idx[node]
        groups.append((node.copy(), s2[name]))
    dense = dense_gaussian_logp(b, np.zeros(n_cells), groups, 0.4)
    fast = cell_prior_logp(b, 0.4, spec.levels, s2, np, np_segment_sum)
    assert fast == pytest.approx(dense, abs=1e-8)


@pytest.mark.parametrize("structure", ["budget", "independent"])
def test_model_potential_matches_rowwise_dense(structure):
    """Through the PyMC model (three-way effect, lineage and llm×unit×task levels, per-task
    residuals): a point drawn from the generative prior, effects assembled per rating by hand,
    then the dense MVN."""
    import pymc as pm

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        data = _data(7)
        model = VariancePartitionModel(data, prior_structure=structure)
        m = model.build_model()
        gen = model.build_model(generative=True)
    assert {"lineage", "llm:unit:task", "llm:prompt:task"} <= set(model.spec.components)
    with gen, warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        point = pm.sample_prior_predictive(draws=1, random_seed=4)["prior"].to_dataset().isel(
            chain=0, draw=0)
    v = {k: point[k].values for k in point.data_vars}
    comps = model.spec.components
    values = dict(v)
    if structure == "budget":  # the sampling form's free variables from the generative point
        values["log_variance"] = np.log([v[f"sigma_{c.replace(':', '_')}"] ** 2
                                         * model.kappa(c) for c in comps])
    replace = {rv: pt.constant(values[rv.name]) for rv in m.free_RVs}
    pot = graph_replace(m["marginal_loglik"], replace=replace, strict=False)
    got = float(pot.eval())

    fam = model.spec.llm_family
    mean = np.empty(data.n_ratings)
    for i in range(data.n_ratings):
        k, j, p = data.task[i], data.llm[i], data.prompt[i]
        mean[i] = (v["intercept"] + v["llm_effect"][j] + v["family_effect"][fam[j]]
                   + v["prompt_effect"][p] + v["task_effect"][k] + v["llm_prompt_effect"][j, p]
                   + v["llm_task_effect"][j, k] + v["prompt_task_effect"][p, k]
                   + v["llm_prompt_task_effect"][j, p, k])
    s2 = {c: float(v[f"sigma_{c.replace(':', '_')}"]) ** 2 for c in comps}
    chain = model.spec.chain
    node = chain.leaves.copy()
    groups = [(node.copy(), s2[chain.finest_component])]
    for name, idx in chain.leaf_parents:
        node = idx[node]
        groups.append((node.copy(), s2[name]))
    s2e = v["sigma_residual_task"] ** 2
    dense = dense_gaussian_logp(data.error, mean, groups, s2e[data.task])
    assert got == pytest.approx(dense, abs=1e-8)


def test_balanced_study_uses_the_folded_form(small_study):
    """A complete design picks the O(units) form, and it equals the per-cell form."""
    from misalign.data import build_misalignment

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        data = build_misalignment(small_study.table())
        spec = make_spec(data)
    args = (data.error, spec.design, spec.n_design, data.cell, spec.levels)
    auto, per_cell = SufficientStats.from_arrays(*args), SufficientStats.from_arrays(
        *args, grouped=False)
    assert auto.grouped is not None and auto.grouped.unit_counts.shape[0] == 1
    f = np.random.default_rng(0).normal(scale=0.3, size=spec.n_design)
    s2 = {name: 0.1 + 0.1 * i for i, (name, _) in enumerate(spec.levels)}
    a = gaussian_marginal_logp(auto, f, 0.2, 0.6, s2)
    b = gaussian_marginal_logp(per_cell, f, 0.2, 0.6, s2)
    assert a == pytest.approx(b, rel=1e-12, abs=1e-8)


def _leaves_below_cells(data):
    """(cell, family) leaves under the cells: the lineage level of E1's full model."""
    fam = np.array([0, 0, 1, 1])[data.llm]  # tiny_unbalanced_frame: f1 = a, b; f2 = c, d
    leaf_key = data.cell.astype(np.int64) * 2 + fam
    keys, leaf = np.unique(leaf_key, return_inverse=True)
    return leaf.ravel(), keys // 2


@pytest.mark.parametrize("grouped", [False, True], ids=["per-leaf", "grouped"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_groups_offsets_and_a_leaf_level_equal_dense(seed, grouped):
    """Per-task residual variances, expert-severity offsets per cell and a level below the
    cells (lineage), against the dense multivariate normal."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        data = _data(seed)
        spec = make_spec(data)
    rng = np.random.default_rng(200 + seed)
    leaf, leaf_cell = _leaves_below_cells(data)
    parents = [("unit:task", leaf_cell)] + list(spec.levels)
    design_task = np.arange(spec.n_design) // (spec.n_design // 3)
    n_cells = int(data.cell.max()) + 1
    # Each cell's reference: one of 3 experts, or the mean of two.
    weights = np.zeros((n_cells, 3))
    first = rng.integers(0, 3, n_cells)
    weights[np.arange(n_cells), first] = 1.0
    two = rng.random(n_cells) < 0.3
    weights[two] = 0.0
    weights[two, first[two]] += 0.5
    weights[two, (first[two] + 1) % 3] += 0.5
    leaf_weights = weights[leaf_cell]
    stats = SufficientStats.from_arrays(data.error, spec.design, spec.n_design, leaf, parents,
                                        grouped=grouped, design_group=design_task,
                                        cell_offset=leaf_weights)
    assert (stats.grouped is not None) == grouped
    f = rng.normal(size=spec.n_design)
    rho = rng.normal(size=3)
    s2e = np.array([0.5, 0.8, 0.3])
    s2 = {"lineage": 0.25, "unit:task": 0.4, "unit": 0.3, "transcript": 0.2, "teacher": 0.5}
    levels = {n: s2[n] for n, _ in parents}
    fast = gaussian_marginal_logp(stats, f, s2["lineage"], s2e, levels, offset=rho)
    groups = [(leaf.copy(), s2["lineage"])]
    node = leaf.copy()
    for name, idx in parents:
        node = idx[node]
        groups.append((node.copy(), s2[name]))
    mean = f[spec.design] + leaf_weights[leaf] @ rho
    dense = dense_gaussian_logp(data.error, mean, groups, s2e[design_task[spec.design]])
    assert fast == pytest.approx(dense, abs=1e-8, rel=1e-12)
    ft, rt, st = pt.dvector("f"), pt.dvector("rho"), pt.dvector("s2e")
    expr = gaussian_marginal_logp(stats, ft, s2["lineage"], st, levels, xp=pt,
                                  segsum=pt_segment_sum, offset=rt)
    fn = pytensor.function([ft, rt, st], [expr, *pytensor.grad(expr, [ft, rt, st])])
    value, *grads = fn(f, rho, s2e)
    assert float(value) == pytest.approx(dense, abs=1e-8)
    assert all(np.all(np.isfinite(g)) for g in grads)
    # The pointwise split (power-scaling) adds up to the same value.
    from misalign.models.likelihood import CellLeaves

    leaves = CellLeaves.from_arrays(data.error, spec.design, spec.n_design, leaf, parents,
                                    design_group=design_task, cell_offset=leaf_weights)
    per_top = leaves.logp(f[None], np.full((1, 1), s2["lineage"]), s2e[None],
                          {n: np.full((1, 1), v) for n, v in levels.items()}, rho[None])
    assert float(per_top.sum()) == pytest.approx(dense, abs=1e-8)


@pytest.mark.parametrize("grouped", [False, True], ids=["per-cell", "grouped"])
def test_equal_size_sub_cells_integrate_in_closed_form(grouped):
    """Lineage at pattern cost: sub-cells of equal size folded into their cell equal the
    dense MVN and the general form with the sub-cells as leaves."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        frame = tiny_unbalanced_frame(seed=9, drop=0.0)
        frame = frame.drop_duplicates(["unit_id", "task", "llm", "prompt"])  # no replicates
        data = MisalignmentData.from_frame(frame, "raw", {"T1": 1.0, "T2": 1.0, "T3": 1.0})
        spec = make_spec(data)
    rng = np.random.default_rng(11)
    leaf, leaf_cell = _leaves_below_cells(data)
    design_task = np.arange(spec.n_design) // (spec.n_design // 3)
    n_cells = int(data.cell.max()) + 1
    weights = np.eye(3)[rng.integers(0, 3, n_cells)]
    stats = SufficientStats.from_arrays(data.error, spec.design, spec.n_design, data.cell,
                                        spec.levels, grouped=grouped, design_group=design_task,
                                        cell_offset=weights, subs=[leaf])
    assert len(stats.tables) == 2 and (stats.grouped is not None) == grouped
    f, rho = rng.normal(size=spec.n_design), rng.normal(size=3)
    s2e = np.array([0.5, 0.8, 0.3])
    s2 = {"unit": 0.3, "transcript": 0.2, "teacher": 0.5}
    levels = {n: s2[n] for n, _ in spec.levels}
    fast = gaussian_marginal_logp(stats, f, 0.4, s2e, levels, offset=rho, sigma2_subs=[0.25])
    general = SufficientStats.from_arrays(
        data.error, spec.design, spec.n_design, leaf, [("unit:task", leaf_cell)] + spec.levels,
        grouped=False, design_group=design_task, cell_offset=weights[leaf_cell])
    assert fast == pytest.approx(gaussian_marginal_logp(
        general, f, 0.25, s2e, levels | {"unit:task": 0.4}, offset=rho), abs=1e-8)
    groups = [(leaf.copy(), 0.25), (data.cell.copy(), 0.4)]
    node = data.cell.copy()
    for name, idx in spec.levels:
        node = idx[node]
        groups.append((node.copy(), s2[name]))
    dense = dense_gaussian_logp(data.error, f[spec.design] + weights[data.cell] @ rho, groups,
                                s2e[design_task[spec.design]])
    assert fast == pytest.approx(dense, abs=1e-8, rel=1e-12)
    with pytest.raises(ValueError, match="equally many ratings"):
        uneven = leaf.copy()
        uneven[np.flatnonzero(leaf == leaf[0])[:1]] = leaf.max() + 1  # one rating moved off
        SufficientStats.from_arrays(data.error, spec.design, spec.n_design, data.cell,
                                    spec.levels, subs=[uneven])


@pytest.mark.parametrize("grouped", [False, True], ids=["per-cell", "grouped"])
def test_two_sub_levels_integrate_in_closed_form(grouped):
    """llm×unit×task inside lineage inside the cell, both folded at pattern cost, against the
    dense MVN."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        frame = tiny_unbalanced_frame(seed=9, drop=0.0)
        frame = frame.drop_duplicates(["unit_id", "task", "llm", "prompt"])
        data = MisalignmentData.from_frame(frame, "raw", {"T1": 1.0, "T2": 1.0, "T3": 1.0})
        spec = make_spec(data)
    rng = np.random.default_rng(12)
    fam_leaf, _ = _leaves_below_cells(data)
    llm_key = data.cell.astype(np.int64) * 4 + data.llm
    _, llm_leaf = np.unique(llm_key, return_inverse=True)
    llm_leaf = llm_leaf.ravel()
    design_task = np.arange(spec.n_design) // (spec.n_design // 3)
    stats = SufficientStats.from_arrays(data.error, spec.design, spec.n_design, data.cell,
                                        spec.levels, grouped=grouped, design_group=design_task,
                                        subs=[llm_leaf, fam_leaf])
    assert len(stats.tables) == 3 and (stats.grouped is not None) == grouped
    f = rng.normal(size=spec.n_design)
    s2e = np.array([0.5, 0.8, 0.3])
    s2 = {"unit": 0.3, "transcript": 0.2, "teacher": 0.5}
    fast = gaussian_marginal_logp(stats, f, 0.4, s2e, {n: s2[n] for n, _ in spec.levels},
                                  sigma2_subs=[0.15, 0.25])
    groups = [(llm_leaf.copy(), 0.15), (fam_leaf.copy(), 0.25), (data.cell.copy(), 0.4)]
    node = data.cell.copy()
    for name, idx in spec.levels:
        node = idx[node]
        groups.append((node.copy(), s2[name]))
    dense = dense_gaussian_logp(data.error, f[spec.design], groups,
                                s2e[design_task[spec.design]])
    assert fast == pytest.approx(dense, abs=1e-8, rel=1e-12)


def test_one_rating_per_cell_has_no_cell_level_and_equals_dense():
    """One LLM, one prompt, no replicates: unit×task is not a component (it cannot be told from
    noise), and the model's likelihood is the dense MVN with no cell-level variance."""
    import pymc as pm

    frame = tiny_unbalanced_frame(3, drop=0.0)
    frame = frame[(frame["llm"] == "m/a") & (frame["prompt"] == "base")
                  & (frame["replicate"] == "1")]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        data = MisalignmentData.from_frame(frame, "raw", {"T1": 1.0, "T2": 1.0, "T3": 1.0})
        model = VariancePartitionModel(data, prior_structure="independent")
        m = model.build_model()
        gen = model.build_model(generative=True)
    assert "unit:task" not in model.spec.components
    assert any("one rating per unit × task" in w for w in model.spec.warnings)
    with gen, warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        point = pm.sample_prior_predictive(draws=1, random_seed=5)["prior"].to_dataset().isel(
            chain=0, draw=0)
    v = {k: point[k].values for k in point.data_vars}
    pot = graph_replace(m["marginal_loglik"], replace={
        rv: pt.constant(v[rv.name]) for rv in m.free_RVs}, strict=False)
    mean = v["intercept"] + v["task_effect"][data.task]
    groups = [(g, s2) for g, s2 in _groups(data, model.spec, {
        c: float(v[f"sigma_{c.replace(':', '_')}"]) ** 2 for c in model.spec.components}
        | {"unit:task": 0.0})]
    dense = dense_gaussian_logp(data.error, mean, groups, v["sigma_residual_task"][data.task] ** 2)
    assert float(pot.eval()) == pytest.approx(dense, abs=1e-8)
