"""Prior predictive check (``misalign prior-check``): what the priors alone imply for the
shares, the aggregates and the error scale, before any data is seen.

Draws every σ of the model (``sigma_components``) from its prior (the same ``Prior`` objects
the model uses, so the check and the fit cannot disagree) and reports the implied
superpopulation shares σ²_k / Σσ², the model's aggregates, and the implied total SD √Σσ² next
to the SD of the data the priors are written against (``prior_scale``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from misalign.models.base import BayesianModel
from misalign.models.options import DEFAULTS

QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)
DEFAULT_SEED = DEFAULTS.seed  # one seed default for every command


def prior_draws(model: BayesianModel, n: int = 4000, seed: int = DEFAULT_SEED) -> pd.DataFrame:
    """One column per component (its σ² drawn from the prior), one row per draw."""
    import pymc as pm

    rng = np.random.default_rng(seed)
    out = {}
    for comp, name in model.sigma_components().items():
        prior = model.priors[name]
        dist = getattr(pm, prior.distribution).dist(**prior.parameters)
        out[comp] = pm.draw(dist, draws=n, random_seed=rng) ** 2
    return pd.DataFrame(out)


def implied(model: BayesianModel, n: int = 4000, seed: int = DEFAULT_SEED) -> pd.DataFrame:
    """Per prior draw: every component's share, every aggregate, and the total SD."""
    v = prior_draws(model, n, seed)
    total = v.sum(axis=1)
    cols = {f"share:{c}": v[c] / total for c in v.columns}
    for agg, members in model.aggregates().items():
        present = [c for c in members if c in v.columns]
        if present:
            cols[f"aggregate:{agg}"] = v[present].sum(axis=1) / total
    cols["error_sd"] = np.sqrt(total)
    return pd.DataFrame(cols)


def prior_check(model: BayesianModel, n: int = 4000, seed: int = DEFAULT_SEED) -> pd.DataFrame:
    """Quantiles of the prior-implied shares, aggregates and total SD; ``attrs`` carry the
    data's SD (``data_error_sd``)."""
    df = implied(model, n, seed)
    table = df.quantile(list(QUANTILES)).T
    table.columns = [f"q{int(q * 100):02d}" for q in QUANTILES]
    table.insert(0, "mean", df.mean())
    table.attrs["data_error_sd"] = model.prior_scale
    return table
