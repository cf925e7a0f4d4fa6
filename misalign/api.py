"""The public Python API: load or simulate ratings, fit E1, read results."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from misalign.data import (
    MisalignmentData,
    RatingsTable,
    ValidationError,
    build_misalignment,
    load_ratings,
)
from misalign.data.simulate import PRESETS, SimulatedStudy, simulate
from misalign.inference import E1Results, fit_e1, load_results
from misalign.models import VariancePartitionModel, read_priors_toml


def load_misalignment(path: str | Path, tasks: str | Path | None = None,
                      error_scale: str = "expert-sd", score_policy: str = "error",
                      task_subset: list[str] | None = None) -> tuple[MisalignmentData,
                                                                     RatingsTable]:
    """Read, validate and turn a ratings file into the misalignment table."""
    table = load_ratings(path, tasks=tasks, score_policy=score_policy)
    return build_misalignment(table, error_scale=error_scale, tasks=task_subset), table


def fit(data: MisalignmentData | SimulatedStudy | str | Path, *, tasks: str | Path | None = None,
        error_scale: str = "expert-sd", likelihood: str = "gaussian",
        priors: dict[str, Any] | str | Path | None = None, sampler: str = "nutpie",
        draws: int = 1000, tune: int = 1000, chains: int = 4, seed: int | None = None,
        progressbar: bool = False) -> E1Results:
    """Fit E1 to a file, a simulated study or a prepared misalignment table."""
    if isinstance(data, (str, Path)):
        data, _ = load_misalignment(data, tasks=tasks, error_scale=error_scale)
    elif isinstance(data, SimulatedStudy):
        data = build_misalignment(data.table(), error_scale=error_scale)
    if isinstance(priors, (str, Path)):
        priors = read_priors_toml(priors)
    return fit_e1(data, likelihood=likelihood, priors=priors, sampler=sampler, draws=draws,
                  tune=tune, chains=chains, seed=seed, progressbar=progressbar)


__all__ = ["PRESETS", "E1Results", "MisalignmentData", "SimulatedStudy", "ValidationError",
           "VariancePartitionModel", "build_misalignment", "fit", "load_misalignment",
           "load_ratings", "load_results", "simulate"]
