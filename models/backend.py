"""Run a sampler on a PyMC model, chosen by name; the same PyMC model feeds every backend.

- ``nutpie`` (default, CPU): the PyMC graph compiled by numba, NUTS in Rust. Fastest here: one
  gradient of the marginalised E1 model is tens of µs, so a sampler with per-step overhead loses.
- ``numpyro``: the graph compiled to JAX, NUTS in numpyro. Runs on a GPU when JAX sees one
  (``pip install "misalign[jax]"`` plus a CUDA build of jaxlib); on a CPU it is slower than
  nutpie for this model (see benchmarks/README.md). Chains run ``vectorized`` on one accelerator
  and ``parallel`` over CPU devices.
- ``pymc``: PyMC's own NUTS, for comparison and for platforms without the other two.
"""

from __future__ import annotations

import os
import sys
import time

import numpy as np
import pymc as pm
import xarray as xr

from .options import SamplerConfig


def _jax_platform() -> str:
    import jax

    return jax.default_backend()


def sample(model: pm.Model, config: SamplerConfig, timing: dict | None = None,
           start: tuple[dict, set[str]] | None = None) -> xr.DataTree:
    """Sample ``model`` (``config.target_accept`` resolved); ``timing`` (if given) receives
    compile_s and sample_s. ``start``: (initial values by variable name, the names of the
    variables to jitter by U(−1, 1) on the unconstrained scale); None: the backends' default
    (the support point, every variable jittered)."""
    sampler, draws, tune, chains = config.sampler, config.draws, config.tune, config.chains
    seed, progressbar, target_accept = config.seed, config.progressbar, config.target_accept
    timing = {} if timing is None else timing
    cores = min(chains, os.cpu_count() or 1)
    t0 = time.perf_counter()
    values, jitter = start if start is not None else ({}, None)
    jitter_rvs = None if jitter is None else {v for v in model.free_RVs if v.name in jitter}
    if sampler == "nutpie":
        import nutpie

        compiled = nutpie.compile_pymc_model(model, initial_points=values or None,
                                             jitter_rvs=jitter_rvs)
        t1 = time.perf_counter()
        out = nutpie.sample(compiled, draws=draws, tune=tune, chains=chains, seed=seed,
                            progress_bar=progressbar, cores=cores, target_accept=target_accept)
        timing.update(compile_s=t1 - t0, sample_s=time.perf_counter() - t1)
        return out
    if sampler == "numpyro":
        if "jax" not in sys.modules:
            # One CPU device per core, so CPU chains can run in parallel (no effect on GPUs).
            os.environ.setdefault("XLA_FLAGS",
                                  f"--xla_force_host_platform_device_count={cores}")
        try:
            platform = _jax_platform()
        except ImportError as exc:
            raise ImportError("--sampler numpyro needs JAX and numpyro: "
                              'pip install "misalign[jax]"') from exc
        method = "parallel" if platform == "cpu" else "vectorized"
        kwargs = {"chain_method": method}
        init = {}
        if start is not None:
            kwargs["jitter"] = False  # the start points below are already jittered
            init = {"initvals": _start_points(model, values, jitter_rvs, chains, seed)}
        with model:
            out = pm.sample(draws=draws, tune=tune, chains=chains, random_seed=seed,
                            progressbar=progressbar, target_accept=target_accept,
                            nuts_sampler="numpyro", compute_convergence_checks=False,
                            nuts_sampler_kwargs=kwargs, **init)
        # numpyro compiles inside its first call; PyMC does not report the split.
        timing.update(compile_s=float("nan"), sample_s=time.perf_counter() - t0,
                      platform=platform, chain_method=method)
        return out
    init = {}
    if start is not None:
        init = {"initvals": _start_points(model, values, jitter_rvs, chains, seed),
                "init": "adapt_diag"}
    with model:
        out = pm.sample(draws=draws, tune=tune, chains=chains, cores=cores, random_seed=seed,
                        progressbar=progressbar, compute_convergence_checks=False,
                        target_accept=target_accept, **init)
    timing.update(compile_s=float("nan"), sample_s=time.perf_counter() - t0)
    return out


def _start_points(model: pm.Model, values: dict, jitter_rvs: set | None, chains: int,
                  seed: int | None) -> list[dict]:
    """One start per chain for PyMC's samplers, drawn as nutpie draws its own."""
    from pymc.initial_point import make_initial_point_fn

    fn = make_initial_point_fn(model=model, overrides=values or None, jitter_rvs=jitter_rvs,
                               return_transformed=False)
    return [fn(int(s)) for s in np.random.SeedSequence(seed).generate_state(chains)]
