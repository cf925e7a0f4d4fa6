"""Prior predictive check (E1 or G-study): what the priors alone imply for the shares, the E1
aggregates and the error scale, before any data is seen (``misalign prior-check``).

Draws every σ from its prior (the same ``Prior`` objects the model uses, so the check and the
fit cannot disagree), and reports the implied superpopulation shares σ²_k / Σσ², the four E1
aggregates, and the implied total error SD √Σσ² next to the data's error SD.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from misalign.data.components import AGGREGATES
from misalign.models.priors import SIGMA_PRIORS
from misalign.models.variance_partition import VariancePartitionModel

QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)


def _sigma_priors(model) -> dict[str, str]:
    """component → prior name, for the E1 model or the G-study model."""
    if isinstance(model, VariancePartitionModel):
        return {c: SIGMA_PRIORS[c] for c in model.spec.components}
    return {c: f"sigma_{c}" for c in model.components}


def _data_sd(model) -> float:
    # The G-study fits standardised scores: its priors are in SDs of each dimension.
    return float(model.error_sd) if isinstance(model, VariancePartitionModel) else 1.0


def prior_draws(model, n: int = 4000, seed: int = 0) -> pd.DataFrame:
    """One column per component (its σ² drawn from the prior), one row per draw."""
    import pymc as pm

    rng = np.random.default_rng(seed)
    out = {}
    for comp, name in _sigma_priors(model).items():
        prior = model.priors[name]
        dist = getattr(pm, prior.distribution).dist(**prior.parameters)
        out[comp] = pm.draw(dist, draws=n, random_seed=rng) ** 2
    return pd.DataFrame(out)


def prior_check(model, n: int = 4000, seed: int = 0) -> pd.DataFrame:
    """Quantiles of the prior-implied shares, aggregates and total error SD."""
    v = prior_draws(model, n, seed)
    total = v.sum(axis=1)
    cols = {f"share:{c}": v[c] / total for c in v.columns}
    if isinstance(model, VariancePartitionModel):
        for agg, members in AGGREGATES.items():
            present = [c for c in members if c in v.columns]
            if present:
                cols[f"aggregate:{agg}"] = v[present].sum(axis=1) / total
    cols["error_sd"] = np.sqrt(total)
    df = pd.DataFrame(cols)
    table = df.quantile(list(QUANTILES)).T
    table.columns = [f"q{int(q * 100):02d}" for q in QUANTILES]
    table.insert(0, "mean", df.mean())
    table.attrs["data_error_sd"] = _data_sd(model)
    return table


def plot_prior_check(model, path, n: int = 4000, seed: int = 0):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from misalign.data.atomic import atomic_write

    v = prior_draws(model, n, seed)
    total = v.sum(axis=1)
    if isinstance(model, VariancePartitionModel):
        aggs = {a: v[[c for c in m if c in v.columns]].sum(axis=1) / total
                for a, m in AGGREGATES.items() if any(c in v.columns for c in m)}
    else:
        aggs = {c: v[c] / total for c in v.columns}
    fig, axes = plt.subplots(1, len(aggs) + 1, figsize=(3.2 * (len(aggs) + 1), 2.8))
    for ax, (name, x) in zip(axes, aggs.items(), strict=False):
        ax.hist(x, bins=40, range=(0, 1), color="tab:blue", alpha=0.8)
        ax.set_title(f"prior: {name} share")
    axes[-1].hist(np.sqrt(total), bins=40, color="tab:gray")
    axes[-1].axvline(_data_sd(model), color="tab:red", label="data SD")
    axes[-1].set_title("prior: total error SD")
    axes[-1].legend()
    fig.tight_layout()
    return atomic_write(path, lambda p: fig.savefig(p, format="png", dpi=110))
