"""Refit sweeps over named prior sets (E6), serially, in local processes or on Dask.

Named sets (each model makes them from its own priors: ``BayesianModel.prior_set``):
- ``default``: the model's priors;
- ``wide`` / ``narrow``: each σ's scale × 4 / ÷ 4 (E1's variance budget: σ_total's);
- ``exponential`` / ``halfstudentt``: the same scale under Exponential (mean = scale) or
  HalfStudentT(ν = 3);
- ``sceptical``: the selection σ's (llm, family, prompt and their interactions) at a quarter of
  their scale (E1's budget: a quarter of their Dirichlet concentration): sceptical of large
  model-and-prompt effects;
- ``independent`` (E1 with the budget prior): the former default, independent σ's;
plus user sets from a TOML file: ``[NAME.sigma_prompt] distribution = "HalfNormal" sigma = 0.1``.

The sweep takes a results object; what travels to a worker is (results file, set name,
overrides, sampler config), and the worker rebuilds the analysis with ``misalign.load``'s
registry and calls its ``refit``. Every refit runs in a fresh Python process
(``refit_isolated``), whoever schedules it: this process one at a time, a thread pool of
``workers``, or a Dask cluster. That is what makes the three give identical numbers: with the
seed fixed, a fit is deterministic in a fresh process, but not across process histories (numba
specialisations compiled earlier in a process can change the last bits of a reduction, and NUTS
amplifies them; measured: 0.6656 vs 0.6566 for one share after other fits had run in the same
process). The same holds for the compilation cache: the first-ever compile of a set's graph can
differ in the last bits from its cached form (measured: a share of 0.656 on a cold cache, 0.663
from the cache), so identical numbers need each graph compiled once; after that every scheduler
gives the same bits.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import tempfile
import tomllib
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd

from misalign.models.options import SamplerConfig

from .analysis import AnalysisResults

SWEEP_SAMPLING = SamplerConfig(progressbar=False)


def read_prior_sets(path: str | Path) -> dict[str, dict[str, dict]]:
    """User sets: ``[NAME.PRIOR] distribution = … params …``."""
    with open(path, "rb") as fh:
        doc = tomllib.load(fh)
    doc = doc.get("sets", doc)
    for name, spec in doc.items():
        if not isinstance(spec, dict) or not all(isinstance(v, dict) for v in spec.values()):
            raise ValueError(f"{path}: [{name}] must hold one table per prior, e.g. "
                             f"[{name}.sigma_prompt] distribution = \"HalfNormal\" sigma = 0.1")
    return doc


def refit_task(path: str, set_name: str, overrides: dict[str, Any], options: dict[str, Any],
               sampling: SamplerConfig) -> pd.DataFrame:
    """Refit the analysis in ``path`` under ``overrides`` (and model ``options``); one row per
    reported quantity."""
    import warnings

    from .registry import load

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = load(path).refit(overrides, sampling, options)
    rows = res.quantities()
    rows.insert(0, "prior_set", set_name)
    rows["gate_passed"] = res.gate.passed
    return rows.reset_index(drop=True)


# Threading that changes reduction order (BLAS, OpenMP) is pinned, so a refit gives the same
# bits under a Dask nanny (which sets these to 1) and anywhere else; it also keeps parallel
# refits from oversubscribing the cores.
PINNED_ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
              "NUMEXPR_NUM_THREADS": "1", "VECLIB_MAXIMUM_THREADS": "1"}


def refit_isolated(path: str, set_name: str, overrides: dict[str, Any],
                   options: dict[str, Any], sampling: SamplerConfig) -> pd.DataFrame:
    """``refit_task`` in a fresh Python process (plain subprocess, so it also works inside a
    daemonic Dask worker)."""
    with tempfile.TemporaryDirectory(prefix="misalign-refit-") as tmp:
        src, dst = Path(tmp) / "task.pkl", Path(tmp) / "result.pkl"
        src.write_bytes(pickle.dumps((path, set_name, overrides, options, sampling)))
        proc = subprocess.run([sys.executable, "-m", "misalign.inference.sweep", str(src),
                               str(dst)], capture_output=True, text=True,
                              env={**os.environ, **PINNED_ENV})
        if proc.returncode != 0 or not dst.exists():
            raise RuntimeError(f"refit under prior set '{set_name}' failed:\n"
                               f"{proc.stderr[-3000:]}")
        return pickle.loads(dst.read_bytes())


@contextmanager
def _results_file(results: AnalysisResults):
    """The file workers read: where the results were loaded from or saved, else a temporary
    copy."""
    if results.path is not None and Path(results.path).exists():
        yield str(results.path)
        return
    with tempfile.TemporaryDirectory(prefix="misalign-sweep-") as tmp:
        yield str(results.save(Path(tmp) / "results.nc"))


def sweep(results: AnalysisResults, sets: list[str] | None = None,
          user_sets: dict | None = None, sampling: SamplerConfig | None = None,
          workers: int = 1, scheduler: str | None = None) -> pd.DataFrame:
    """Refit under each prior set; rows in the order of the sets, whatever ran them."""
    sampling = sampling or SWEEP_SAMPLING
    m = results.model
    tasks = [(n, *m.prior_set(n)) for n in (sets or list(m.prior_sets()))]
    tasks += [(n, o, {}) for n, o in (user_sets or {}).items()]
    with _results_file(results) as path:
        args = [(path, n, o, opt, sampling) for n, o, opt in tasks]
        if scheduler is not None:
            from distributed import Client

            with Client(scheduler) as client:
                futures = [client.submit(refit_isolated, *a, pure=False) for a in args]
                parts = client.gather(futures)
        else:
            with ThreadPoolExecutor(max_workers=max(1, workers)) as ex:
                parts = list(ex.map(refit_isolated, *zip(*args, strict=True)))
    return pd.concat(parts, ignore_index=True)


def movement(table: pd.DataFrame) -> pd.DataFrame:
    """Per quantity: max − min of the posterior means across sets, and the set furthest from
    the default."""
    rows = []
    for q, g in table.groupby("quantity", sort=False):
        base = g.loc[g["prior_set"] == "default", "mean"]
        ref = float(base.iloc[0]) if len(base) else float(g["mean"].median())
        far = g.iloc[(g["mean"] - ref).abs().argmax()]
        rows.append({"quantity": q, "range": float(g["mean"].max() - g["mean"].min()),
                     "min": float(g["mean"].min()), "max": float(g["mean"].max()),
                     "moved_most_by": far["prior_set"]})
    return pd.DataFrame(rows)


if __name__ == "__main__":  # one isolated refit: python -m misalign.inference.sweep IN OUT
    task = pickle.loads(Path(sys.argv[1]).read_bytes())
    Path(sys.argv[2]).write_bytes(pickle.dumps(refit_task(*task)))
