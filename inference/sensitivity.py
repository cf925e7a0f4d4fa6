"""Power-scaling prior and likelihood sensitivity of the E1 model (Kallioinen et al. 2024),
with ArviZ's ``psense_summary``.

What the tools need and how it is defined here:
- **log prior**: the log density of each top-level prior (the σ's) at every draw. Only these are
  power-scaled; the zero-sum effects are not (their prior is the σ's model).
- **pointwise log likelihood**: the marginal likelihood integrates the nested effects out, so
  single ratings are not conditionally independent given the parameters. Given the crossed
  effects and σ's, the nodes of the top nested level (teachers, or the highest level the data
  identify) *are* independent, so the likelihood factorises exactly over them: the pointwise
  value is the marginal log likelihood of everything one teacher's units received. Their sum is
  the model's likelihood (tested). Power-scaling uses that sum; the per-teacher split is what a
  LOO-style tool would need.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr

from misalign.models.likelihood import LOG_2PI
from misalign.models.priors import SIGMA_PRIORS
from misalign.models.spec import design_means, full_design_means
from misalign.models.variance_partition import EFFECTS, VariancePartitionModel

from .shares import SAMPLE_DIMS

THRESHOLD = 0.05


class _Pointwise:
    """Data constants for per-top-node marginal log likelihoods of the Gaussian E1 model."""

    def __init__(self, model: VariancePartitionModel) -> None:
        d, spec = model.data, model.spec
        y, cell, design = d.error, d.cell, spec.design
        self.n_design = spec.n_design
        self.n_cells = int(cell.max()) + 1
        self.cell_n = np.bincount(cell, minlength=self.n_cells).astype(float)
        self.cell_sum = np.bincount(cell, weights=y, minlength=self.n_cells)
        self.cell_sq = np.bincount(cell, weights=y * y, minlength=self.n_cells)
        pair, cnt = np.unique(cell.astype(np.int64) * self.n_design + design, return_counts=True)
        self.p_cell, self.p_design = pair // self.n_design, pair % self.n_design
        self.p_n = cnt.astype(float)
        self.p_sum = np.bincount(np.searchsorted(pair, cell.astype(np.int64) * self.n_design
                                                 + design), weights=y, minlength=len(pair))
        self.levels = spec.levels
        top = np.arange(self.n_cells)
        for _, idx in self.levels:
            top = idx[top]
        self.cell_top = top
        self.n_top = int(top.max()) + 1
        self.top_name = self.levels[-1][0] if self.levels else "cell"

    def logp(self, f: np.ndarray, s2_cell: np.ndarray, s2_res: np.ndarray,
             s2: dict[str, np.ndarray]) -> np.ndarray:
        """(draws, top nodes) log likelihoods; f (draws, design), σ²'s (draws,)."""
        nd = f.shape[0]

        def seg(x: np.ndarray, idx: np.ndarray, n: int) -> np.ndarray:
            out = np.zeros((nd, n))
            np.add.at(out, (slice(None), idx), x)
            return out

        fp = f[:, self.p_design]
        g = seg(self.p_n * fp, self.p_cell, self.n_cells)
        yf = seg(self.p_sum * fp, self.p_cell, self.n_cells)
        ff = seg(self.p_n * fp**2, self.p_cell, self.n_cells)
        resid = self.cell_sum - g
        ssw = self.cell_sq - 2 * yf + ff - resid**2 / self.cell_n
        s2e = s2_res[:, None]
        per_cell = (-0.5 * (self.cell_n - 1) * (LOG_2PI + np.log(s2e))
                    - 0.5 * np.log(self.cell_n) - ssw / (2 * s2e))
        out = seg(per_cell, self.cell_top, self.n_top)
        m, v = resid / self.cell_n, s2_cell[:, None] + s2e / self.cell_n
        node_top = self.cell_top  # the top node of each node of the current level
        for name, idx in self.levels:
            n_par = int(idx.max()) + 1
            k = np.bincount(idx, minlength=n_par).astype(float)
            lam = 1.0 / v
            big = seg(lam, idx, n_par)
            mbar = seg(lam * m, idx, n_par) / big
            dev = m - mbar[:, idx]
            term_child = 0.5 * np.log(lam) - 0.5 * lam * dev**2
            par_top = np.zeros(n_par, dtype=np.int64)
            par_top[idx] = node_top
            out += seg(term_child, node_top, self.n_top)
            out += seg(-0.5 * (k - 1) * LOG_2PI - 0.5 * np.log(big), par_top, self.n_top)
            m, v = mbar, s2[name][:, None] + 1.0 / big
            node_top = par_top
        top = -0.5 * (LOG_2PI + np.log(v) + m**2 / v)
        return out + seg(top, node_top, self.n_top)


def _effects(post: xr.Dataset) -> dict[str, np.ndarray]:
    eff = {"intercept": post["intercept"].values.reshape(-1)}
    for _comp, (name, dims) in EFFECTS.items():
        if name in post:
            v = post[name].transpose(*SAMPLE_DIMS, *dims).values
            eff[name] = v.reshape(-1, *v.shape[2:])
    return eff


def pointwise_log_likelihood(model: VariancePartitionModel, chunk: int = 250) -> xr.DataArray:
    """(chain, draw, top level) marginal log likelihood per top-level node (Gaussian E1)."""
    if model.likelihood != "gaussian":
        raise NotImplementedError("power-scaling sensitivity is defined for the Gaussian E1 "
                                  "model; the Student-t model's likelihood is per rating given "
                                  "its cell latents (not written yet)")
    post = model.idata["posterior"].to_dataset()
    pw = _Pointwise(model)
    base, rest = design_means(_effects(post), model.spec, np)
    f = full_design_means(base, rest, model.spec, np)
    flat = {c: (post[SIGMA_PRIORS[c]].values.reshape(-1) ** 2) for c in model.spec.components}
    s2_levels = {name: flat[name] for name, _ in model.spec.levels}
    n_chain, n_draw = post.sizes["chain"], post.sizes["draw"]
    parts = []
    for a in range(0, f.shape[0], chunk):
        b = slice(a, a + chunk)
        parts.append(pw.logp(f[b], flat["unit:task"][b], flat["residual"][b],
                             {k: v[b] for k, v in s2_levels.items()}))
    ll = np.concatenate(parts).reshape(n_chain, n_draw, pw.n_top)
    return xr.DataArray(ll, dims=("chain", "draw", pw.top_name),
                        coords={"chain": post["chain"].values, "draw": post["draw"].values})


def log_prior(model: VariancePartitionModel) -> xr.Dataset:
    """Log density of every σ's prior at each draw (constrained scale, as sampled)."""
    import pymc as pm

    post = model.idata["posterior"].to_dataset()
    out = xr.Dataset()
    for comp in model.spec.components:
        name = SIGMA_PRIORS[comp]
        prior = model.priors[name]
        params = {k: v for k, v in prior.parameters.items()}
        dist = getattr(pm, prior.distribution).dist(**params)
        vals = post[name].values
        out[name] = (SAMPLE_DIMS, pm.logp(dist, vals).eval())
    return out.assign_coords(chain=post["chain"].values, draw=post["draw"].values)


def sensitivity_tree(model: VariancePartitionModel) -> xr.DataTree:
    post = model.idata["posterior"].to_dataset()
    sig = [SIGMA_PRIORS[c] for c in model.spec.components]
    return xr.DataTree.from_dict({
        "posterior": post[sig],
        "log_prior": log_prior(model),
        "log_likelihood": pointwise_log_likelihood(model).to_dataset(name="misalignment")})


def powerscale_table(model: VariancePartitionModel, threshold: float = THRESHOLD
                     ) -> pd.DataFrame:
    """Prior and likelihood sensitivity of every σ, with ArviZ's diagnosis."""
    from arviz_stats import psense_summary

    tree = sensitivity_tree(model)
    sig = list(tree["log_prior"].data_vars)
    table = psense_summary(tree, var_names=sig, prior_var_names=sig, threshold=threshold)
    comp = {SIGMA_PRIORS[c]: c for c in model.spec.components}
    table.index = [comp.get(i, i) for i in table.index]
    return table
