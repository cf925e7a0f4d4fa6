"""Power-scaling prior and likelihood sensitivity (Kallioinen et al. 2024) with ArviZ's
``psense_summary``, for any analysis, through its model's hooks:

- ``AnalysisResults.sensitivity_quantities()``: what is checked (E1: every share and aggregate,
  both kinds, the overall bias and the total error SD; otherwise the model's σ's);
- ``log_prior(posterior)``: the log density at every draw of the priors that are power-scaled
  (``sensitivity_priors``: E1's variance budget as one joint density, the intercept's prior,
  the spread of the residual across tasks; the zero-sum effects are not scaled: their prior is
  the σ's model);
- ``pointwise_log_likelihood(posterior)``: the marginal likelihood integrates the nested effects
  out, so single ratings are not conditionally independent given the parameters; the nodes of
  the top nested level (teachers, or the highest level the data identify) are, so the
  likelihood factorises exactly over them. Power-scaling uses their sum; the split is what a
  LOO-style tool would need.
"""

from __future__ import annotations

import pandas as pd
import xarray as xr

from .analysis import AnalysisResults

THRESHOLD = 0.05


def sensitivity_tree(results: AnalysisResults) -> xr.DataTree:
    m = results.model
    post = m.posterior
    return xr.DataTree.from_dict({
        "posterior": results.sensitivity_quantities(),
        "log_prior": m.log_prior(post),
        "log_likelihood": m.pointwise_log_likelihood(post).to_dataset(name="ratings")})


def powerscale_table(results: AnalysisResults, threshold: float = THRESHOLD) -> pd.DataFrame:
    """Prior and likelihood sensitivity of every checked quantity, with ArviZ's diagnosis
    (index: ``quantity``)."""
    from arviz_stats import psense_summary

    tree = sensitivity_tree(results)
    names = {v: k for k, v in results.model.sigma_components().items()}
    table = psense_summary(tree, var_names=list(tree["posterior"].data_vars),
                           prior_var_names=list(tree["log_prior"].data_vars),
                           threshold=threshold)
    table.index = pd.Index([_label(i, names) for i in table.index], name="quantity")
    return table


def _label(index: str, names: dict[str, str]) -> str:
    """``sigma_prompt`` → ``prompt``; ``sigma_rater[CLPC]`` → ``CLPC/rater``."""
    base, _, rest = str(index).partition("[")
    comp = names.get(base, base)
    return f"{rest.rstrip(']')}/{comp}" if rest else comp
