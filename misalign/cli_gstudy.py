"""``misalign gstudy``: the reliability of expert ratings (G-study and decision study)."""

from __future__ import annotations

import time
import warnings
from pathlib import Path
from typing import Annotated

import typer

import misalign.cli_common as common
from misalign.models.options import SamplerConfig

ExpertFormat = common.choices("ExpertFormat", "long", "ncte-class")


@common.sampler_options
def gstudy(
    data: Annotated[Path, typer.Argument(help="Expert ratings (long format, or the NCTE file).")],
    fmt: Annotated[ExpertFormat, typer.Option("--format", help=(
        "long: the ratings format (expert rows); ncte-class: one row per segment × rater, one "
        "column per CLASS dimension."))] = ExpertFormat["long"],
    dimensions: Annotated[str | None, typer.Option(help=(
        "Comma-separated dimensions (tasks) to study (default: all)."))] = None,
    facets: Annotated[str | None, typer.Option(help=(
        "Extra nested facets above the teacher: school, district (ncte-class only)."))] = None,
    correlated: Annotated[bool, typer.Option(help=(
        "Fit all dimensions together with correlated teacher effects."))] = False,
    likelihood: Annotated[common.Likelihood, typer.Option(help=(
        "gaussian: lessons and teachers integrated out; student: Student-t segment noise with "
        "explicit lesson effects."))] = common.Likelihood["gaussian"],
    tasks: Annotated[Path | None, typer.Option(help="Task table for the long format.")] = None,
    priors: common.PriorsOpt = None,
    results: Annotated[Path, typer.Option("--out", help="Results file (NetCDF).")] = Path(
        "gstudy.nc"),
    strict: common.StrictOpt = False,
    as_json: common.JsonOpt = False,
    sampling: SamplerConfig = None,
) -> None:
    """G-study of expert ratings: variance components, decision study, noise ceiling inputs."""
    common.missing_file(data, tasks, priors)
    from misalign import api
    from misalign.data import ValidationError
    from misalign.data.experts import load_experts
    from misalign.models import PriorError

    t0 = time.perf_counter()
    try:
        ratings = load_experts(data, fmt.value, tasks)
        if dimensions:
            ratings = ratings.subset([d.strip() for d in dimensions.split(",") if d.strip()])
    except ValidationError as exc:
        raise common.problems(exc) from None
    facet_list = tuple(f.strip() for f in facets.split(",") if f.strip()) if facets else ()
    if not as_json:
        common.err.print(f"{len(ratings.frame):,} expert ratings of {len(ratings.dimensions)} "
                  f"dimension(s) from {data}; compiling, then sampling…", markup=False,
                  highlight=False)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            res = api.fit_gstudy(ratings, facets=facet_list, likelihood=likelihood.value,
                                 correlated=correlated, priors=priors, sampling=sampling)
    except (ValueError, PriorError) as exc:
        raise common.fail(f"error: {exc}") from None
    common.save_and_show(res, results, as_json, strict, time.perf_counter() - t0)


def register(app: typer.Typer) -> None:
    app.command()(gstudy)
