"""The public Python API: load or simulate ratings, fit an analysis, read any results file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from misalign.data import (
    MisalignmentData,
    ValidationError,
    build_misalignment,
    load_ratings,
)
from misalign.data.experts import ExpertRatings, load_experts
from misalign.data.measurement import MeasurementData, build_measurement
from misalign.data.simulate import PRESETS, SimulatedStudy, simulate
from misalign.data.tables import read_llms, read_teachers
from misalign.inference import (
    AnalysisResults,
    E1Results,
    GStudyResults,
    MeasurementResults,
    load,
    load_gstudy,
    load_results,
)
from misalign.inference.measurement import experts_priors
from misalign.models import VariancePartitionModel, read_priors_toml
from misalign.models.options import SamplerConfig


def load_misalignment(path: str | Path, tasks: str | Path | None = None,
                      error_scale: str = "expert-sd", score_policy: str = "error",
                      task_subset: list[str] | None = None) -> MisalignmentData:
    """Read, validate and turn a ratings file into the misalignment table (rows dropped under
    ``score_policy="drop"`` are in its ``dropped``, each with its reason)."""
    table = load_ratings(path, tasks=tasks, score_policy=score_policy)
    return build_misalignment(table, error_scale=error_scale, tasks=task_subset)


def misalignment_data(data: MisalignmentData | SimulatedStudy | str | Path | None = None, *,
                      tasks: str | Path | None = None, error_scale: str = "expert-sd",
                      score_policy: str = "error", task_subset: list[str] | None = None,
                      preset: str = "small") -> MisalignmentData:
    """The E1 input from a ratings file, a simulated study, a prepared table, or (``None``) the
    embedded default: the simulated ``preset`` study."""
    if isinstance(data, MisalignmentData):
        return data
    if isinstance(data, (str, Path)):
        return load_misalignment(data, tasks=tasks, error_scale=error_scale,
                                 score_policy=score_policy, task_subset=task_subset)
    study = data if data is not None else simulate(preset, compute_truth=False)
    return build_misalignment(study.table(), error_scale=error_scale, tasks=task_subset)


def _priors(priors: dict[str, Any] | str | Path | None) -> dict[str, Any] | None:
    return read_priors_toml(priors) if isinstance(priors, (str, Path)) else priors


def fit(data: MisalignmentData | SimulatedStudy | str | Path | None = None, *,
        tasks: str | Path | None = None, error_scale: str = "expert-sd",
        likelihood: str = "gaussian", priors: dict[str, Any] | str | Path | None = None,
        prior_structure: str = "budget", score_policy: str = "error",
        task_subset: list[str] | None = None, preset: str = "small",
        sampling: SamplerConfig | None = None, keep_cell_means: bool = False,
        **sampler: Any) -> E1Results:
    """Fit E1 to a ratings file, a simulated study, a prepared table or the embedded default.
    ``priors``: overrides by name, or a TOML file of them; ``keep_cell_means``: under
    Student-t, keep the cell latents in the posterior; ``sampler``: any ``SamplerConfig``
    field (``draws``, ``chains``, ``seed``, …)."""
    mis = misalignment_data(data, tasks=tasks, error_scale=error_scale,
                               score_policy=score_policy, task_subset=task_subset, preset=preset)
    return E1Results.fit(mis, likelihood=likelihood, priors=_priors(priors), sampling=sampling,
                         prior_structure=prior_structure, keep_cell_means=keep_cell_means,
                         **sampler)


def measurement_data(data: MeasurementData | SimulatedStudy | str | Path | None = None, *,
                     tasks: str | Path | None = None, teachers: Any = None, llms: Any = None,
                     score_policy: str = "error") -> MeasurementData:
    """The joint model's input (expert and LLM scores) from a ratings file, a simulated study,
    a prepared table, or (``None``) the simulated small study. ``teachers`` (value-added) and
    ``llms`` (benchmark scores): a file (``data/tables.py`` validates it against the ratings)
    or a table; a simulated study brings its own."""
    if isinstance(data, MeasurementData):
        return data
    if isinstance(data, (str, Path)):
        table = load_ratings(data, tasks=tasks, score_policy=score_policy,
                             require_reference=False)
    else:
        study = data if data is not None else simulate("small", compute_truth=False)
        table = study.table()
        teachers = study.teachers if teachers is None else teachers
        llms = study.llms if llms is None else llms
    r = table.ratings
    if isinstance(teachers, (str, Path)):
        teachers = read_teachers(teachers, rated=r["teacher_id"].astype(str).unique())
    if isinstance(llms, (str, Path)):
        llms = read_llms(llms, rated=r.loc[r["rater_kind"] == "llm", "rater"].astype(str)
                         .unique())
    return build_measurement(table, teachers, llms)


def fit_measurement(data: MeasurementData | SimulatedStudy | str | Path | None = None, *,
                    tasks: str | Path | None = None,
                    priors: dict[str, Any] | str | Path | None = None,
                    experts_prior: AnalysisResults | str | Path | None = None,
                    teachers: Any = None, llms: Any = None,
                    sampling: SamplerConfig | None = None, **sampler: Any
                    ) -> MeasurementResults:
    """The joint measurement model (E2, E1 net of the reference). ``experts_prior``: a G-study
    results object or file of the same instrument, whose rater and residual variances become
    the priors of the experts' severity and noise (with double-rated cells in the data, those
    identify them anyway)."""
    md = measurement_data(data, tasks=tasks, teachers=teachers, llms=llms)
    priors = dict(_priors(priors) or {})
    source = ""
    if experts_prior is not None:
        g = experts_prior if isinstance(experts_prior, AnalysisResults) else load(experts_prior)
        if not hasattr(g, "variances"):
            raise ValueError(f"{experts_prior}: not a G-study results file (`misalign gstudy`)")
        expert, matched = experts_priors(g, md)
        if not matched:
            raise ValueError(f"{getattr(g, 'path', experts_prior)}: the G-study has none of "
                             f"the tasks {', '.join(md.tasks)}")
        priors = expert | priors
        source = (f"the G-study {getattr(g, 'path', '') or 'given'} (tasks "
                  f"{', '.join(matched)}; the others: default priors)")
    return MeasurementResults.fit(md, priors=priors or None, experts_prior=source,
                                  sampling=sampling, **sampler)


def fit_gstudy(ratings: ExpertRatings | str | Path, *, fmt: str = "long",
               tasks: str | Path | None = None, dimensions: list[str] | None = None,
               facets: tuple[str, ...] = (), likelihood: str = "gaussian",
               correlated: bool = False, priors: dict[str, Any] | str | Path | None = None,
               sampling: SamplerConfig | None = None, **sampler: Any) -> GStudyResults:
    """G-study of expert ratings (an ``ExpertRatings`` or a file in ``fmt``)."""
    if not isinstance(ratings, ExpertRatings):
        ratings = load_experts(ratings, fmt, tasks)
    if dimensions:
        ratings = ratings.subset(dimensions)
    return GStudyResults.fit(ratings, facets=facets, likelihood=likelihood,
                             correlated=correlated, priors=_priors(priors), sampling=sampling,
                             **sampler)


__all__ = ["PRESETS", "AnalysisResults", "E1Results", "GStudyResults", "MeasurementData",
           "MeasurementResults", "MisalignmentData",
           "SamplerConfig", "SimulatedStudy", "ValidationError", "VariancePartitionModel",
           "build_measurement", "build_misalignment", "fit", "fit_gstudy", "fit_measurement",
           "load", "load_experts", "load_gstudy", "measurement_data",
           "load_misalignment", "load_ratings", "load_results", "misalignment_data",
           "simulate"]
