"""Power-scaling sensitivity (E6, first part): the pointwise likelihood adds up to the model's,
and on the small preset the 3-level prompt σ is flagged while the shared and residual σ's are
not."""

from __future__ import annotations

import numpy as np
import pytest

from misalign.inference.sensitivity import powerscale_table
from misalign.models.base import flat_draws
from misalign.models.e1_priors import SIGMA_PRIORS
from misalign.models.likelihood import SufficientStats, gaussian_marginal_logp
from misalign.models.spec import design_means, full_design_means
from misalign.models.variance_partition import EFFECTS


def test_pointwise_log_likelihood_sums_to_the_marginal_likelihood(small_fit):
    m = small_fit.model
    post = m.posterior
    ll = m.pointwise_log_likelihood(post)
    assert ll.dims == ("chain", "draw", "teacher")
    effects = {"intercept": flat_draws(post["intercept"])} | {
        name: flat_draws(post[name].transpose("chain", "draw", *dims))
        for name, dims in EFFECTS.values() if name in post}
    base, rest = design_means(effects, m.spec, np)
    f = full_design_means(base, rest, m.spec, np)
    s2 = {c: post[SIGMA_PRIORS[c]].values.reshape(-1) ** 2 for c in m.spec.components}
    stats = SufficientStats.from_arrays(m.data.error, m.spec.design, m.spec.n_design,
                                        m.data.cell, m.spec.levels)
    for i in (0, 1234, 3999):
        ref = gaussian_marginal_logp(stats, f[i], s2["unit:task"][i], s2["residual"][i],
                                     {n: s2[n][i] for n, _ in m.spec.levels})
        c, d = divmod(i, post.sizes["draw"])
        assert float(ll.isel(chain=c, draw=d).sum()) == pytest.approx(ref, rel=1e-10)


def test_powerscale_flags_the_prompt_sigma_not_shared_or_residual(small_fit):
    table = powerscale_table(small_fit)
    assert table.loc["prompt", "prior"] > 0.05
    assert table.loc["prompt", "diagnosis"] != "✓"
    for comp in ("unit:task", "residual"):
        assert table.loc[comp, "prior"] < 0.05 and table.loc[comp, "diagnosis"] == "✓"


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
