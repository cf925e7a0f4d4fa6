"""What a user would fit instead of misalign's marginalised model, on the same data.

- ``naive_pymc``: every effect an explicit non-centred latent (one per unit×task cell, unit,
  transcript and teacher), a Normal likelihood over every rating: O(ratings) per gradient and
  thousands of latents.
- ``bambi``: the equivalent crossed random-effects formula, as bambi builds it.

Both report superpopulation shares σ²_k / Σσ² per draw, the quantity compared with misalign's.
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import xarray as xr

FORMULA_TERMS = ["llm", "family", "prompt", "task", "llm:prompt", "llm:task", "prompt:task",
                 "unit_id", "transcript_id", "teacher_id", "unit_id:task"]


def _frame(data) -> pd.DataFrame:
    f = data.frame
    return pd.DataFrame({c: f[c].astype(str) for c in
                         ("llm", "family", "prompt", "task", "unit_id", "transcript_id",
                          "teacher_id")} | {"error": f["error"].to_numpy()})


def naive_pymc(data, draws: int, tune: int, chains: int, seed: int = 1) -> dict:
    import pymc as pm

    df = _frame(data)
    sd = float(df["error"].std())
    codes = {}
    for term in FORMULA_TERMS:
        key = df[term.split(":")[0]]
        for part in term.split(":")[1:]:
            key = key + "|" + df[part]
        codes[term] = pd.factorize(key)[0]
    with pm.Model() as model:
        mu = pm.Normal("intercept", 0.0, 2.5 * sd)
        for term, c in codes.items():
            name = term.replace(":", "_")
            s = pm.HalfNormal(f"sigma_{name}", sd)
            z = pm.Normal(f"z_{name}", 0.0, 1.0, shape=int(c.max()) + 1)
            mu = mu + s * z[c]
        pm.HalfNormal("sigma_residual", sd)
        pm.Normal("error", mu, model["sigma_residual"], observed=df["error"].to_numpy())
        t0 = time.perf_counter()
        idata = pm.sample(draws=draws, tune=tune, chains=chains, cores=min(chains, 2),
                          random_seed=seed, progressbar=False, compute_convergence_checks=False)
        elapsed = time.perf_counter() - t0
    sig = [f"sigma_{t.replace(':', '_')}" for t in FORMULA_TERMS] + ["sigma_residual"]
    return {"posterior": idata["posterior"].to_dataset(), "sigmas": sig, "sample_s": elapsed,
            "divergences": int(idata["sample_stats"]["diverging"].sum())}


def bambi_fit(data, draws: int, tune: int, chains: int, seed: int = 1) -> dict:
    import bambi as bmb

    df = _frame(data)
    rhs = " + ".join(f"(1|{t})" for t in FORMULA_TERMS)
    model = bmb.Model(f"error ~ 1 + {rhs}", df)
    t0 = time.perf_counter()
    idata = model.fit(draws=draws, tune=tune, chains=chains, cores=min(chains, 2),
                      random_seed=seed, progressbar=False)
    elapsed = time.perf_counter() - t0
    post = idata["posterior"].to_dataset() if hasattr(idata, "children") else idata.posterior
    sig = [f"1|{t}_sigma" for t in FORMULA_TERMS] + ["sigma"]
    stats = idata["sample_stats"] if hasattr(idata, "children") else idata.sample_stats
    return {"posterior": post, "sigmas": sig, "sample_s": elapsed,
            "divergences": int(stats["diverging"].sum())}


def shares_from_sigmas(post: xr.Dataset, sigmas: list[str]) -> xr.DataArray:
    v = xr.concat([post[s] ** 2 for s in sigmas], dim="component")
    return v / v.sum("component")


def min_ess_rhat(shares: xr.DataArray) -> tuple[float, float]:
    import arviz as az

    ess = az.ess(shares, method="bulk", sample_dims=["chain", "draw"])
    rhat = az.rhat(shares, sample_dims=["chain", "draw"])
    return float(np.nanmin(np.asarray(ess))), float(np.nanmax(np.asarray(rhat)))
