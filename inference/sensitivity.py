"""Power-scaling prior and likelihood sensitivity (Kallioinen et al. 2024) with ArviZ's
``psense_summary``, for every model that implements the small interface below (E1 and the
G-study today: ``sensitivity_adapter``).

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
import scipy.sparse as sp
import xarray as xr

from misalign.models.gstudy import GStudyModel
from misalign.models.likelihood import LOG_2PI
from misalign.models.priors import SIGMA_PRIORS
from misalign.models.spec import design_means, full_design_means
from misalign.models.stacked import StackedStats
from misalign.models.variance_partition import EFFECTS, VariancePartitionModel

from .shares import SAMPLE_DIMS

THRESHOLD = 0.05


class _Pointwise:
    """Data constants for per-top-node marginal log likelihoods of a Gaussian model whose
    crossed part is a design-cell mean and whose nested part is cells under ``levels``."""

    def __init__(self, y: np.ndarray, cell: np.ndarray, design: np.ndarray, n_design: int,
                 levels: list[tuple[str, np.ndarray]], top_name: str) -> None:
        self.n_design = n_design
        self.n_cells = int(cell.max()) + 1
        self.cell_n = np.bincount(cell, minlength=self.n_cells).astype(float)
        self.cell_sum = np.bincount(cell, weights=y, minlength=self.n_cells)
        self.cell_sq = np.bincount(cell, weights=y * y, minlength=self.n_cells)
        key = cell.astype(np.int64) * n_design + design
        pair, cnt = np.unique(key, return_counts=True)
        self.p_cell, self.p_design = pair // n_design, pair % n_design
        self.p_n = cnt.astype(float)
        self.p_sum = np.bincount(np.searchsorted(pair, key), weights=y, minlength=len(pair))
        self.levels = levels
        top = np.arange(self.n_cells)
        for _, idx in levels:
            top = idx[top]
        self.cell_top = top
        self.n_top = int(top.max()) + 1
        self.top_name = top_name

    def logp(self, f: np.ndarray, s2_cell: np.ndarray, s2_res: np.ndarray,
             s2: dict[str, np.ndarray]) -> np.ndarray:
        """(draws, top nodes) log likelihoods. ``f``: (draws, design); σ²'s: (draws, nodes of
        their level) or (draws, 1)."""
        nd = f.shape[0]
        cache: dict = {}

        def seg(x: np.ndarray, idx: np.ndarray, n: int) -> np.ndarray:
            # Segment sums as a sparse matrix product: np.add.at is ~100× slower here.
            key = (id(idx), n)
            if key not in cache:
                cache[key] = sp.csr_matrix((np.ones(len(idx)), (idx, np.arange(len(idx)))),
                                           shape=(n, len(idx)))
            x = np.broadcast_to(x, (nd, len(idx)))
            return np.asarray((cache[key] @ x.T).T)

        fp = f[:, self.p_design]
        g = seg(self.p_n * fp, self.p_cell, self.n_cells)
        yf = seg(self.p_sum * fp, self.p_cell, self.n_cells)
        ff = seg(self.p_n * fp**2, self.p_cell, self.n_cells)
        resid = self.cell_sum - g
        ssw = self.cell_sq - 2 * yf + ff - resid**2 / self.cell_n
        per_cell = (-0.5 * (self.cell_n - 1) * (LOG_2PI + np.log(s2_res))
                    - 0.5 * np.log(self.cell_n) - ssw / (2 * s2_res))
        out = seg(per_cell, self.cell_top, self.n_top)
        m, v = resid / self.cell_n, s2_cell + s2_res / self.cell_n
        node_top = self.cell_top  # the top node of each node of the current level
        for name, idx in self.levels:
            n_par = int(idx.max()) + 1
            k = np.bincount(idx, minlength=n_par).astype(float)
            lam = 1.0 / v
            big = seg(lam, idx, n_par)
            mbar = seg(lam * m, idx, n_par) / big
            dev = m - mbar[:, idx]
            par_top = np.zeros(n_par, dtype=np.int64)
            par_top[idx] = node_top
            out += seg(0.5 * np.log(lam) - 0.5 * lam * dev**2, node_top, self.n_top)
            out += seg(-0.5 * (k - 1) * LOG_2PI - 0.5 * np.log(big), par_top, self.n_top)
            m, v = mbar, s2[name] + 1.0 / big
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
    levels = model.spec.levels
    pw = _Pointwise(model.data.error, model.data.cell, model.spec.design, model.spec.n_design,
                    levels, levels[-1][0] if levels else "cell")
    base, rest = design_means(_effects(post), model.spec, np)
    f = full_design_means(base, rest, model.spec, np)
    flat = {c: (post[SIGMA_PRIORS[c]].values.reshape(-1, 1) ** 2)
            for c in model.spec.components}
    return _chunked(pw, f, flat["unit:task"], flat["residual"],
                    {name: flat[name] for name, _ in levels}, post, chunk)


def _chunked(pw: _Pointwise, f, s2_cell, s2_res, s2_levels, post, chunk: int) -> xr.DataArray:
    parts = []
    for a in range(0, f.shape[0], chunk):
        b = slice(a, a + chunk)
        parts.append(pw.logp(f[b], s2_cell[b], s2_res[b],
                             {k: v[b] for k, v in s2_levels.items()}))
    n_chain, n_draw = post.sizes["chain"], post.sizes["draw"]
    ll = np.concatenate(parts).reshape(n_chain, n_draw, pw.n_top)
    return xr.DataArray(ll, dims=("chain", "draw", pw.top_name),
                        coords={"chain": post["chain"].values, "draw": post["draw"].values})


def _sigma_logp(prior, values: np.ndarray) -> np.ndarray:
    import pymc as pm

    dist = getattr(pm, prior.distribution).dist(**prior.parameters)
    return pm.logp(dist, values).eval()


def log_prior(model: VariancePartitionModel) -> xr.Dataset:
    """Log density of every σ's prior at each draw (constrained scale, as sampled)."""
    post = model.idata["posterior"].to_dataset()
    out = xr.Dataset()
    for comp in model.spec.components:
        name = SIGMA_PRIORS[comp]
        out[name] = (SAMPLE_DIMS, _sigma_logp(model.priors[name], post[name].values))
    return out.assign_coords(chain=post["chain"].values, draw=post["draw"].values)


class E1Sensitivity:
    """The sensitivity interface for the E1 model."""

    def __init__(self, model: VariancePartitionModel) -> None:
        self.model = model

    def sigma_names(self) -> dict[str, str]:
        return {SIGMA_PRIORS[c]: c for c in self.model.spec.components}

    def log_prior(self) -> xr.Dataset:
        return log_prior(self.model)

    def pointwise_log_likelihood(self) -> xr.DataArray:
        return pointwise_log_likelihood(self.model)


class GStudySensitivity:
    """The sensitivity interface for the (independent, Gaussian) G-study model: σ's per
    dimension; pointwise = one (dimension, top-level node) — teachers, or schools/districts
    when those facets are fitted — which factorises the stacked marginal likelihood exactly."""

    def __init__(self, model: GStudyModel) -> None:
        if model.likelihood != "gaussian" or model.correlated:
            raise NotImplementedError("power-scaling is written for the independent Gaussian "
                                      "G-study (not --correlated or --likelihood student)")
        self.model = model

    def sigma_names(self) -> dict[str, str]:
        return {f"sigma_{c}": c for c in self.model.components}

    def log_prior(self) -> xr.Dataset:
        post = self.model.idata["posterior"].to_dataset()
        out = xr.Dataset()
        for name in self.sigma_names():
            v = post[name].transpose(*SAMPLE_DIMS, "dimension")
            out[name] = v.copy(data=_sigma_logp(self.model.priors[name], v.values))
        return out

    def pointwise_log_likelihood(self, chunk: int = 250) -> xr.DataArray:
        m = self.model
        a = m._stacked()
        n_dim, n_rater = len(m.dims), len(m.coords["rater"])
        design = a["group"] * n_rater + a["rater"]
        st = StackedStats.build(a["y"], a["group"], design, n_dim * n_rater, a["lesson"],
                                m.parents, n_dim)
        n_keys = int(a["lesson"].max()) + 1
        _, cell = np.unique(a["group"].astype(np.int64) * n_keys + a["lesson"],
                            return_inverse=True)
        levels = [(name, idx) for name, idx, _ in st.parents]
        pw = _Pointwise(a["y"], cell, design, n_dim * n_rater, levels,
                        f"dimension_{levels[-1][0]}")
        post = m.idata["posterior"].to_dataset()

        def draws(name: str) -> np.ndarray:
            v = post[name].transpose(*SAMPLE_DIMS, ...).values
            return v.reshape(-1, *v.shape[2:])

        f = (draws("intercept")[:, :, None] + draws("rater_effect")).reshape(-1, n_dim * n_rater)
        s2 = {c: draws(f"sigma_{c}") ** 2 for c in m.components}
        groups = {name: grp for name, _, grp in st.parents}
        return _chunked(pw, f, s2["lesson"][:, st.cell_group], s2["residual"][:, st.cell_group],
                        {name: s2[name][:, groups[name]] for name, _ in levels}, post, chunk)


def sensitivity_adapter(model) -> E1Sensitivity | GStudySensitivity:
    """The one interface a model implements to get power-scaling: ``sigma_names``,
    ``log_prior``, ``pointwise_log_likelihood``."""
    if isinstance(model, VariancePartitionModel):
        return E1Sensitivity(model)
    if isinstance(model, GStudyModel):
        return GStudySensitivity(model)
    raise TypeError(f"no sensitivity interface for {type(model).__name__}")


def sensitivity_tree(model) -> xr.DataTree:
    ad = sensitivity_adapter(model)
    post = model.idata["posterior"].to_dataset()
    return xr.DataTree.from_dict({
        "posterior": post[list(ad.sigma_names())],
        "log_prior": ad.log_prior(),
        "log_likelihood": ad.pointwise_log_likelihood().to_dataset(name="ratings")})


def powerscale_table(model, threshold: float = THRESHOLD) -> pd.DataFrame:
    """Prior and likelihood sensitivity of every σ, with ArviZ's diagnosis."""
    from arviz_stats import psense_summary

    tree = sensitivity_tree(model)
    names = sensitivity_adapter(model).sigma_names()
    table = psense_summary(tree, var_names=list(names), prior_var_names=list(names),
                           threshold=threshold)
    table.index = [_label(i, names) for i in table.index]
    return table


def _label(index: str, names: dict[str, str]) -> str:
    """``sigma_prompt`` → ``prompt``; ``sigma_rater[CLPC]`` → ``CLPC/rater``."""
    base, _, rest = str(index).partition("[")
    comp = names.get(base, base)
    return f"{rest.rstrip(']')}/{comp}" if rest else comp
