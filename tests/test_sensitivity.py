"""Power-scaling sensitivity (E6, first part): the pointwise likelihood adds up to the model's,
and on the small preset the 3-level prompt σ is flagged while the shared and residual σ's are
not."""

from __future__ import annotations

import numpy as np
import pytest

from misalign.inference.sensitivity import _effects, pointwise_log_likelihood, powerscale_table
from misalign.models.likelihood import SufficientStats, gaussian_marginal_logp
from misalign.models.priors import SIGMA_PRIORS
from misalign.models.spec import design_means, full_design_means


def test_pointwise_log_likelihood_sums_to_the_marginal_likelihood(small_fit):
    m = small_fit.model
    ll = pointwise_log_likelihood(m)
    assert ll.dims == ("chain", "draw", "teacher")
    post = m.idata["posterior"].to_dataset()
    base, rest = design_means(_effects(post), m.spec, np)
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
    table = powerscale_table(small_fit.model)
    assert table.loc["prompt", "prior"] > 0.05
    assert table.loc["prompt", "diagnosis"] != "✓"
    for comp in ("unit:task", "residual"):
        assert table.loc[comp, "prior"] < 0.05 and table.loc[comp, "diagnosis"] == "✓"
