"""Run a sampler on a PyMC model, chosen by name: nutpie (default) or PyMC's own NUTS."""

from __future__ import annotations

import os

import pymc as pm
import xarray as xr

SAMPLERS = ("nutpie", "pymc")
# Factors with few levels pin their realised effects, so log σ meets a steep wall
# (−α²/2σ²) in its left tail; smaller steps avoid the rare divergences there. Gradients of
# the marginalised model are cheap, so the extra leapfrog steps cost little.
TARGET_ACCEPT = 0.95


def sample(model: pm.Model, sampler: str = "nutpie", draws: int = 1000, tune: int = 1000,
           chains: int = 4, seed: int | None = None, progressbar: bool = True,
           target_accept: float = TARGET_ACCEPT) -> xr.DataTree:
    if sampler not in SAMPLERS:
        raise ValueError(f"sampler must be one of {SAMPLERS}, not {sampler!r}")
    cores = min(chains, os.cpu_count() or 1)
    if sampler == "nutpie":
        import nutpie

        compiled = nutpie.compile_pymc_model(model)
        return nutpie.sample(compiled, draws=draws, tune=tune, chains=chains, seed=seed,
                             progress_bar=progressbar, cores=cores, target_accept=target_accept)
    with model:
        return pm.sample(draws=draws, tune=tune, chains=chains, cores=cores, random_seed=seed,
                         progressbar=progressbar, compute_convergence_checks=False,
                         target_accept=target_accept)
