"""Prior and posterior predictive replications of the misalignment errors.

The likelihood integrates the nested effects out, so a replication draws them afresh from their
Gaussian distributions given each draw's σ's (a *mixed* replication, Gelman, Meng & Stern 1996):
it checks the variance structure, not the fitted level of any one unit. ``model`` is the E1
model (its ``spec``, ``data`` and ``likelihood``), typed by its base class so that this module
does not import the model that imports it.
"""

from __future__ import annotations

import warnings

import numpy as np
import pymc as pm
import xarray as xr

from .base import SAMPLE_DIMS, BayesianModel, flat_draws
from .e1_priors import SIGMA_PRIORS
from .likelihood import CellLeaves
from .spec import EFFECTS, design_means, full_design_means

_EFFECT_VARS = ("intercept", "llm_effect", "family_effect", "prompt_effect", "task_effect",
                "llm_prompt_effect", "llm_task_effect", "prompt_task_effect",
                "llm_prompt_task_effect", "reference_effect", "sigma_residual_task",
                "nu_minus_2")


def _replicate(model: BayesianModel, params: xr.Dataset, rng: np.random.Generator
               ) -> np.ndarray:
    """params: one dataset with dims (sample, …); returns errors (sample, rating)."""
    spec, data = model.spec, model.data
    S = params.sizes["sample"]
    effects = {k: params[k].values for k in _EFFECT_VARS if k in params}
    f = full_design_means(*design_means(effects, spec, np), spec, np)
    sig = {c: params[SIGMA_PRIORS[c]].values for c in spec.components if c in SIGMA_PRIORS
           and SIGMA_PRIORS[c] in params}
    # Walk up the tree from the finest nodes: each level's effect reaches every rating below.
    chain = spec.chain
    if model.likelihood == "gaussian" and chain is not None:
        node, parents, finest = chain.leaves, chain.leaf_parents, chain.finest_component
    else:
        node, parents, finest = data.cell, spec.levels, "unit:task"
    n_nodes = int(node.max()) + 1
    s_finest = sig.get(finest, np.zeros(S))  # no unit:task term: one rating per cell
    nested = rng.standard_normal((S, n_nodes)) * s_finest[:, None]
    up = np.arange(n_nodes)
    for name, idx in parents:
        up = idx[up]
        level = rng.standard_normal((S, int(idx.max()) + 1)) * sig[name][:, None]
        nested += level[:, up]
    y = f[:, spec.design] + nested[:, node]
    if "reference_effect" in effects and spec.reference_weights is not None:
        y += (effects["reference_effect"] @ spec.reference_weights.T)[:, data.cell]
    scale = (effects["sigma_residual_task"][:, data.task] if "sigma_residual_task" in effects
             else sig["residual"][:, None])
    if model.likelihood == "student":
        nu = 2.0 + params["nu_minus_2"].values
        y += rng.standard_t(nu[:, None], size=y.shape) * scale
    else:
        y += rng.standard_normal(y.shape) * scale
    return y


def generate_errors(model: BayesianModel, params: xr.Dataset,
                    seed: int | None = None) -> np.ndarray:
    """Errors for the model's design from its own generative form at the given parameter values
    (dims ``sample`` plus each effect's dims); one row per sample. For simulation-based checks."""
    return _replicate(model, params, np.random.default_rng(seed))


def _to_tree(y: np.ndarray, chains: int, group: str, observed: np.ndarray) -> xr.DataTree:
    draws = y.shape[0] // chains
    da = xr.DataArray(y[: chains * draws].reshape(chains, draws, -1),
                      dims=("chain", "draw", "rating"), name="error")
    return xr.DataTree.from_dict({
        group: xr.Dataset({"error": da}),
        "observed_data": xr.Dataset({"error": xr.DataArray(observed, dims=("rating",))}),
    })


def prior_predictive(model: BayesianModel, draws: int = 100, seed: int | None = None
                     ) -> xr.DataTree:
    # The generative form: every prior as stated (the sampling form has Flat parameters).
    m = model.build_model(generative=True)
    names = [v.name for v in m.free_RVs if v.name != "cell_mean"]
    names += [d.name for d in m.deterministics]
    with m, warnings.catch_warnings():
        # Only the parameters are drawn here; the errors are replicated below, so PyMC's warning
        # that Potentials are ignored does not apply.
        warnings.filterwarnings("ignore", message="The effect of Potentials")
        prior = pm.sample_prior_predictive(draws=draws, var_names=names, random_seed=seed)
    ds = prior["prior"].to_dataset().stack(sample=("chain", "draw")).transpose("sample", ...)
    y = _replicate(model, ds, np.random.default_rng(seed))
    return _to_tree(y, 1, "prior_predictive", model.data.error)


def posterior_predictive(model: BayesianModel, draws: int = 100,
                         seed: int | None = None) -> xr.DataTree:
    post = model.idata["posterior"].to_dataset()
    keep = [v for v in post.data_vars if v in _EFFECT_VARS or v.startswith("sigma_")]
    ds = post[keep].stack(sample=("chain", "draw")).transpose("sample", ...)
    rng = np.random.default_rng(seed)
    take = np.sort(rng.choice(ds.sizes["sample"], size=min(draws, ds.sizes["sample"]),
                              replace=False))
    y = _replicate(model, ds.isel(sample=take), rng)
    return _to_tree(y, 1, "posterior_predictive", model.data.error)


def pointwise_loglik(model: BayesianModel, posterior: xr.Dataset, chunk: int = 250
                     ) -> xr.DataArray:
    """The E1 model's marginal log likelihood per top-level node, per draw (see
    ``VariancePartitionModel.pointwise_log_likelihood``)."""
    if model.likelihood != "gaussian":
        raise NotImplementedError(
            "power-scaling sensitivity is defined for the Gaussian E1 model; the Student-t "
            "model's likelihood is per rating given its cell latents (not written yet)")
    spec, data, chain = model.spec, model.data, model.spec.chain
    node_cell = np.zeros(int(chain.leaves.max()) + 1, dtype=np.int64)
    node_cell[chain.leaves] = data.cell
    weights = spec.reference_weights
    K = len(spec.coords["task"])
    leaves = CellLeaves.from_arrays(
        data.error, spec.design, spec.n_design, chain.leaves, chain.leaf_parents,
        design_group=spec.design_task if K > 1 else None,
        cell_offset=None if weights is None else weights[node_cell])
    eff = {"intercept": flat_draws(posterior["intercept"])}
    for name, dims in EFFECTS.values():
        if name in posterior:
            eff[name] = flat_draws(posterior[name].transpose(*SAMPLE_DIMS, *dims))
    f = full_design_means(*design_means(eff, spec, np), spec, np)
    s2 = {c: flat_draws(posterior[SIGMA_PRIORS[c]])[:, None] ** 2 for c in spec.components}
    s2e = (flat_draws(posterior["sigma_residual_task"]) ** 2 if K > 1
           else s2["residual"])
    offset = flat_draws(posterior["reference_effect"]) if weights is not None else None
    top = chain.leaf_parents[-1][0] if chain.leaf_parents else "cell"
    return leaves.logp_draws(f, s2.get(chain.finest_component, 0.0), s2e,
                             {name: s2[name] for name, _ in chain.leaf_parents}, posterior,
                             top, chunk, offset=offset)


def student_residual_mean_square(model: BayesianModel, post: xr.Dataset,
                                 chunk: int = 200) -> np.ndarray:
    """(draws,) Student-t's realised mean squared residual given the cell latents (the
    fast path computes the same per draw in ``student_kernels.residual_mean_square``)."""
    spec, data = model.spec, model.data
    eff = {"intercept": flat_draws(post["intercept"])}
    for name, dims in EFFECTS.values():
        if name in post:
            eff[name] = flat_draws(post[name].transpose(*SAMPLE_DIMS, *dims))
    _, rest = design_means(eff, spec, np)
    b = flat_draws(post["cell_mean"])
    out = []
    for a in range(0, b.shape[0], chunk):
        r = data.error - rest[a:a + chunk][:, spec.design] - b[a:a + chunk][:, data.cell]
        out.append(np.mean(r**2, axis=1))
    return np.concatenate(out)
