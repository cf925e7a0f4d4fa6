"""nutpie on the compiled kernels: the C function pointers nutpie's Rust sampler calls, with the
packed arrays as its user data (no Python and no lock between gradient evaluations, so chains
run in parallel as with a PyMC model compiled by numba)."""

from __future__ import annotations

import os
import time
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from .options import SamplerConfig

ENV_SWITCH = "MISALIGN_FAST_PATH"  # "0": always compile the PyMC graph (comparisons, bisects)


def enabled() -> bool:
    return os.environ.get(ENV_SWITCH, "1") != "0"


def _compiled(fast: Any, model: Any, kernels: Any, seed_init: np.ndarray,
              jitter: bool = True) -> Any:
    from nutpie.compile_pymc import _UNCONSTRAINED_PARAMETER, CompiledPyMCModel

    F, Z = fast.F, fast.Z
    user = np.array([F.ctypes.data, len(F), Z.ctypes.data, len(Z)], dtype=np.int64)
    coords = {name: pd.Index(vals) for name, vals in model.coords.items()}
    flat = []
    for name, shape in zip(fast.value_names, fast.value_shapes, strict=True):
        flat += [name] if not shape else [f"{name}_{i}" for i in range(int(np.prod(shape)))]
    coords[_UNCONSTRAINED_PARAMETER] = pd.Index(flat)
    dims = dict(model.named_vars_to_dims)
    for value, rv in ((model.rvs_to_values[rv].name, rv.name) for rv in model.free_RVs):
        if value != rv and rv in dims:
            dims[value] = dims[rv]
    slices, at = [], 0
    for shape in fast.trace_shapes:
        n = int(np.prod(shape))
        slices.append(slice(at, at + n))
        at += n

    def initial_point(seed):
        if not jitter:
            return seed_init.copy()
        rng = np.random.default_rng(seed)
        return seed_init + rng.uniform(-1.0, 1.0, size=len(seed_init))

    return CompiledPyMCModel(
        _n_dim=fast.n_dim, dims=dims, _coords=coords,
        _shapes={n: tuple(s) for n, s in zip(fast.trace_names, fast.trace_shapes, strict=True)},
        compiled_logp_func=kernels[0], compiled_expand_func=kernels[1],
        initial_point_func=initial_point, shared_data={"F": F, "Z": Z, "user": user},
        shared_var_keys={}, user_data=user, n_expanded=at,
        shape_info=(fast.trace_names, slices, fast.trace_shapes), logp_func=None,
        expand_func=None, reparameterized_names=fast.reparameterized)


def sample_fast(fast: Any, kernels: tuple, *, model: Any, config: SamplerConfig,
                timing: dict, start: np.ndarray | None = None) -> xr.DataTree:
    """Sample with nutpie through ``kernels`` (logp and expand cfuncs); ``timing`` receives
    compile_s (packing and loading the cached kernels) and sample_s. ``start``: a free vector
    every chain starts from, unjittered (None: the support point, jittered by U(−1, 1))."""
    import nutpie

    t0 = time.perf_counter()
    compiled = _compiled(fast, model, kernels, fast.init if start is None else start,
                         jitter=start is None)
    t1 = time.perf_counter()
    out = nutpie.sample(compiled, draws=config.draws, tune=config.tune, chains=config.chains,
                        seed=config.seed, progress_bar=config.progressbar,
                        cores=min(config.chains, os.cpu_count() or 1),
                        target_accept=config.target_accept)
    timing.update(compile_s=timing.get("compile_s", 0.0) + t1 - t0,
                  sample_s=time.perf_counter() - t1, fast_path=True)
    return out
