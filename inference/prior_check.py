"""Prior predictive check (``misalign prior-check``): what the priors alone imply for the
shares, the aggregates and the error scale, before any data is seen.

Draws every component's variance from the model's priors (``BayesianModel.prior_variances``:
the same ``Prior`` objects the model uses, independent σ's or E1's variance budget, so the check
and the fit cannot disagree) and reports the implied superpopulation shares v_k / Σv, the
model's aggregates, and the implied total SD √Σv next to the SD of the data the priors are
written against (``prior_scale``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from misalign.models.base import BayesianModel
from misalign.models.options import DEFAULTS

QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)
DEFAULT_SEED = DEFAULTS.seed  # one seed default for every command


def prior_draws(model: BayesianModel, n: int = 4000, seed: int = DEFAULT_SEED) -> pd.DataFrame:
    """One column per component (its variance drawn from the prior), one row per draw."""
    return model.prior_variances(n, np.random.default_rng(seed))


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
    table.attrs["total"] = model.prior_total
    return table


def prior_check_lines(table: pd.DataFrame) -> list[str]:
    """Plain sentences: does the prior's 90% interval of the total error SD cover the data's,
    and where do the aggregates' prior means sit against the neutral 1/(number of them)."""
    sd = table.attrs["data_error_sd"]
    lo, hi = (float(table.loc["error_sd", c]) for c in ("q05", "q95"))
    inside = "inside" if lo <= sd <= hi else "OUTSIDE"
    what = table.attrs.get("total", "Total error SD")
    lines = [f"{what}: the prior's 90% interval [{lo:.2f}, {hi:.2f}]; the data's SD "
             f"{sd:.3f} is {inside} it."]
    aggs = [i for i in table.index if i.startswith("aggregate:") and i != "aggregate:family"]
    if aggs:
        means = ", ".join(f"{i.split(':', 1)[1]} {table.loc[i, 'mean']:.3f}" for i in aggs)
        lines.append(f"Prior mean of each aggregate's share: {means} (neutral: 1/{len(aggs)} = "
                     f"{1 / len(aggs):.3f} each; family is part of attributable).")
    return lines
