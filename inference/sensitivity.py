"""Power-scaling prior and likelihood sensitivity (Kallioinen et al. 2024) with ArviZ's
``psense_summary``, for any analysis, through its model's hooks:

- ``sigma_components()``: the σ's whose priors are power-scaled (the zero-sum effects are not:
  their prior is the σ's model);
- ``log_prior(posterior)``: the log density of each of those priors at every draw;
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
        "posterior": post[list(m.sigma_components().values())],
        "log_prior": m.log_prior(post),
        "log_likelihood": m.pointwise_log_likelihood(post).to_dataset(name="ratings")})


def powerscale_table(results: AnalysisResults, threshold: float = THRESHOLD) -> pd.DataFrame:
    """Prior and likelihood sensitivity of every σ, with ArviZ's diagnosis."""
    from arviz_stats import psense_summary

    tree = sensitivity_tree(results)
    names = {v: k for k, v in results.model.sigma_components().items()}
    table = psense_summary(tree, var_names=list(names), prior_var_names=list(names),
                           threshold=threshold)
    table.index = [_label(i, names) for i in table.index]
    return table


def _label(index: str, names: dict[str, str]) -> str:
    """``sigma_prompt`` → ``prompt``; ``sigma_rater[CLPC]`` → ``CLPC/rater``."""
    base, _, rest = str(index).partition("[")
    comp = names.get(base, base)
    return f"{rest.rstrip(']')}/{comp}" if rest else comp
