"""Power-scaling sensitivity (E6, first part): the pointwise likelihood adds up to the model's
own (its PyMC graph, evaluated at posterior draws), every reported quantity is checked with
every prior (the intercept's included), and a prior that fights the data is flagged."""

from __future__ import annotations

import numpy as np
import pytest

from misalign.inference.sensitivity import powerscale_table, sensitivity_tree
from misalign.models.options import SamplerConfig


def _point(model, post, chain: int, draw: int) -> dict[str, np.ndarray]:
    """The value variables of the PyMC model at one posterior draw (transformed where the
    model samples on a transformed scale)."""
    point = {}
    for rv in model.free_RVs:
        value = np.asarray(post[rv.name].isel(chain=chain, draw=draw).values, dtype=float)
        tr = model.rvs_to_transforms.get(rv)
        if tr is not None:
            value = tr.forward(value, *rv.owner.inputs).eval()
        point[model.rvs_to_values[rv].name] = value
    return point


def test_pointwise_log_likelihood_sums_to_the_marginal_likelihood(small_fit):
    m = small_fit.model
    post = m.posterior
    ll = m.pointwise_log_likelihood(post)
    assert ll.dims == ("chain", "draw", "teacher")
    graph = m.build_model()
    out = graph.replace_rvs_by_values([graph["marginal_loglik"]])[0]
    fn = graph.compile_fn(out, inputs=graph.value_vars, point_fn=True,
                          on_unused_input="ignore")
    for c, d in ((0, 0), (1, 234), (3, 999)):
        ref = float(fn(_point(graph, post, c, d)))
        assert float(ll.isel(chain=c, draw=d).sum()) == pytest.approx(ref, rel=1e-9)


def test_powerscale_covers_every_reported_quantity_and_every_prior(small_fit):
    tree = sensitivity_tree(small_fit)
    assert set(tree["log_prior"].data_vars) == {"intercept", "tau_residual", "variance_budget"}
    table = powerscale_table(small_fit)
    s = small_fit.shares
    expected = {f"{prefix}:{name} ({short})"
                for kind, short in (("superpopulation", "superpop"),
                                    ("finite_population", "finite"))
                for var, dim, prefix in ((f"{kind}_aggregate", "aggregate", "aggregate"),
                                         (kind, "component", "share"))
                for name in s[var][dim].values.tolist()}
    assert set(table.index) == expected | {"overall bias", "total error SD"}
    # The default priors are weak where the data speak: nothing is prior-dominated.
    for q in ("aggregate:shared (superpop)", "aggregate:residual (finite)", "overall bias"):
        assert table.loc[q, "prior"] < 0.05


def test_powerscale_flags_a_prior_that_fights_the_data(small_fit):
    """σ_total ~ HalfNormal(0.3) against errors of SD ≈ 1: the superpopulation shares it pulls
    are prior-sensitive; what the data pin (the total error SD of these LLMs, the overall bias,
    the finite-population shares) is not."""
    tight = small_fit.refit({"sigma_total": {"distribution": "HalfNormal", "sigma": 0.3}},
                            SamplerConfig(draws=300, tune=300, chains=2, seed=3,
                                          progressbar=False))
    table = powerscale_table(tight)
    sup = table[table.index.str.endswith("(superpop)")]
    flagged = sup[(sup["prior"] > 0.05) & (sup["diagnosis"] != "✓")]
    assert len(flagged) >= 2, sup
    fin = table[table.index.str.endswith("(finite)")]
    assert (fin["prior"] < 0.05).all(), fin
    assert table.loc["total error SD", "prior"] < 0.05
    assert table.loc["overall bias", "prior"] < 0.05


@pytest.fixture(scope="module")
def gstudy_fit():
    import warnings

    from misalign.data.simulate_experts import simulate_experts
    from misalign.inference.gstudy import fit_gstudy

    ratings, _ = simulate_experts(n_teachers=60, dimensions=("A", "B"), seed=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return fit_gstudy(ratings, draws=300, tune=300, chains=2, progressbar=False,
                          target_accept=0.8)


def test_gstudy_through_the_same_interface(gstudy_fit):
    from misalign.inference.prior_check import prior_check
    from misalign.models.stacked import StackedStats, stacked_marginal_logp

    m = gstudy_fit.model
    ll = m.pointwise_log_likelihood(m.posterior)
    assert ll.dims == ("chain", "draw", "dimension_teacher") and ll.shape[-1] == 2 * 60
    post = m.idata["posterior"].to_dataset()
    a = m._stacked()
    n_dim, n_rater = len(m.dims), len(m.coords["rater"])
    st = StackedStats.build(a["y"], a["group"], a["group"] * n_rater + a["rater"],
                            n_dim * n_rater, a["lesson"], m.parents, n_dim)
    d = post.isel(chain=1, draw=17)
    s2 = {c: d[f"sigma_{c}"].values ** 2 for c in m.components}
    ref = stacked_marginal_logp(
        st, (d["intercept"].values[:, None] + d["rater_effect"].values).ravel(),
        np.arange(n_dim * n_rater) // n_rater, s2["lesson"], s2["residual"],
        {"teacher": s2["teacher"]}, np, lambda x, i, n: np.bincount(i, weights=x, minlength=n))
    assert float(ll.isel(chain=1, draw=17).sum()) == pytest.approx(ref, rel=1e-10)
    table = powerscale_table(gstudy_fit)
    assert set(table.index) == {f"{dim}/{c}" for dim in ("A", "B") for c in m.components}
    pc = prior_check(m)
    assert {"share:teacher", "share:rater", "error_sd"} <= set(pc.index)
