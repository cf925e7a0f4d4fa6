"""How much of a superpopulation share is prior: the overlap of its posterior with its prior.

The overlap coefficient ∫ min(p, q) of the prior and posterior densities of a share (1: the data
moved nothing; 0: the posterior sits where the prior put no mass). Computed from draws of the
priors alone (``BayesianModel.prior_variances``, the same priors the fit used) and the posterior
draws, with Gaussian kernel densities on the logit scale (shares live on (0, 1) and pile up near
0, where a density on the share scale is badly estimated).

Above ``MOSTLY_PRIOR`` (0.5: more than half of the posterior's mass lies where the prior alone
already put it) the table flags the superpopulation share as mostly prior and points to the
finite-population column, which describes the LLMs and prompts in the data and does not rest on
extrapolating from a few levels to their population.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

MOSTLY_PRIOR = 0.5
PRIOR_DRAWS = 2000
POSTERIOR_DRAWS = 2000  # kernel densities cost draws × grid: 4,000 × 2,000 took 4 s per fit
_SEED = 20240611  # fixed: the flag must not change between two reads of one results file
_EPS = 1e-12


def _logit(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, _EPS, 1.0 - _EPS)
    return np.log(x) - np.log1p(-x)


def overlap(prior: np.ndarray, posterior: np.ndarray, grid: int = 512) -> float:
    """Overlap coefficient of two samples of a share (kernel densities on the logit scale)."""
    from scipy.stats import gaussian_kde

    a, b = _logit(np.asarray(prior, float)), _logit(np.asarray(posterior, float))
    if np.ptp(b) == 0.0 or np.ptp(a) == 0.0:
        return float("nan")
    x = np.linspace(min(a.min(), b.min()), max(a.max(), b.max()), grid)
    return float(np.clip(np.trapezoid(np.minimum(gaussian_kde(a)(x), gaussian_kde(b)(x)), x),
                         0.0, 1.0))


def prior_shares(model, members: dict[str, tuple[str, ...]], n: int = PRIOR_DRAWS
                 ) -> dict[str, np.ndarray]:
    """Prior draws of every component's and every aggregate's superpopulation share."""
    v = model.prior_variances(n, np.random.default_rng(_SEED))
    share = v.div(v.sum(axis=1), axis=0)
    out = {c: share[c].to_numpy() for c in share.columns}
    return out | {f"aggregate:{a}": share[list(m)].sum(axis=1).to_numpy()
                  for a, m in members.items()}


def share_overlaps(model, shares: xr.Dataset, members: dict[str, tuple[str, ...]]
                   ) -> dict[str, xr.DataArray]:
    """``superpopulation_prior_overlap`` (component) and
    ``superpopulation_aggregate_prior_overlap`` (aggregate)."""
    prior = prior_shares(model, members)
    out = {}
    for var, dim, key in (("superpopulation", "component", "{}"),
                          ("superpopulation_aggregate", "aggregate", "aggregate:{}")):
        da = shares[var]
        names = da[dim].values.tolist()
        values = []
        for name in names:
            draws = da.sel({dim: name}).values.ravel()
            step = max(1, draws.size // POSTERIOR_DRAWS)
            values.append(overlap(prior[key.format(name)], draws[::step]))
        out[f"{var}_prior_overlap"] = xr.DataArray(np.array(values), dims=dim,
                                                   coords={dim: names})
    return out
