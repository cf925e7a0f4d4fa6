"""``misalign gstudy``: the reliability of expert ratings (G-study and decision study)."""

from __future__ import annotations

import json
import sys
import time
import warnings
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from misalign.cli_common import EXIT_GATE, err, out
from misalign.cli_common import fail as _fail
from misalign.cli_common import problems as _problems


class ExpertFormat(StrEnum):
    long = "long"
    ncte_class = "ncte-class"


class GLikelihood(StrEnum):
    gaussian = "gaussian"
    student = "student"


def gstudy(
    data: Annotated[Path, typer.Argument(help="Expert ratings (long format, or the NCTE file).")],
    fmt: Annotated[ExpertFormat, typer.Option("--format", help=(
        "long: the ratings format (expert rows); ncte-class: one row per segment × rater, one "
        "column per CLASS dimension."))] = ExpertFormat.long,
    dimensions: Annotated[str | None, typer.Option(help=(
        "Comma-separated dimensions (tasks) to study (default: all)."))] = None,
    facets: Annotated[str | None, typer.Option(help=(
        "Extra nested facets above the teacher: school, district (ncte-class only)."))] = None,
    correlated: Annotated[bool, typer.Option(help=(
        "Fit all dimensions together with correlated teacher effects."))] = False,
    likelihood: Annotated[GLikelihood, typer.Option()] = GLikelihood.gaussian,
    tasks: Annotated[Path | None, typer.Option(help="Task table for the long format.")] = None,
    draws: Annotated[int, typer.Option(min=1)] = 1000,
    tune: Annotated[int, typer.Option(min=0)] = 1000,
    chains: Annotated[int, typer.Option(min=1)] = 4,
    seed: Annotated[int, typer.Option()] = 1,
    target_accept: Annotated[float, typer.Option(min=0.5, max=0.999, help=(
        "NUTS target acceptance; raise it if the gate reports divergences."))] = 0.8,
    results: Annotated[Path, typer.Option("--out", help="Results file (NetCDF).")] = Path(
        "gstudy.nc"),
    strict: Annotated[bool, typer.Option(help="Exit 3 if the diagnostics gate fails.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the results as JSON.")] = False,
    progress: Annotated[bool, typer.Option(help="Show the sampler's progress bar.")] = True,
) -> None:
    """G-study of expert ratings: variance components, decision study, noise ceiling inputs."""
    from misalign.data import ValidationError
    from misalign.data.experts import load_experts
    from misalign.inference.gstudy import fit_gstudy
    from misalign.models import PriorError
    from misalign.reports.gstudy import GStudyReport, components_table, decision_table

    t0 = time.perf_counter()
    try:
        ratings = load_experts(data, fmt.value, tasks)
        if dimensions:
            ratings = ratings.subset([d.strip() for d in dimensions.split(",") if d.strip()])
    except ValidationError as exc:
        raise _problems(exc) from None
    facet_list = tuple(f.strip() for f in facets.split(",") if f.strip()) if facets else ()
    if not as_json:
        n = len(ratings.frame)
        err.print(f"{n:,} expert ratings of {len(ratings.dimensions)} dimension(s) from "
                  f"{data}; compiling, then sampling…", markup=False, highlight=False)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            res = fit_gstudy(ratings, facets=facet_list, likelihood=likelihood.value,
                             correlated=correlated, draws=draws, tune=tune, chains=chains,
                             seed=seed, progressbar=progress and not as_json,
                             target_accept=target_accept)
    except (ValueError, PriorError) as exc:
        raise _fail(f"error: {exc}") from None
    saved = res.save(results)
    report = GStudyReport.from_results(res)
    if as_json:
        payload = report.to_dict() | {"results_file": str(saved),
                                      "wall_seconds": round(time.perf_counter() - t0, 2)}
        sys.stdout.write(json.dumps(payload, indent=2, default=str) + "\n")
    else:
        out.print(components_table(report))
        out.print(decision_table(report))
        for note in report.notes:
            err.print(f"note: {note}", markup=False, highlight=False)
        sys.stderr.write(report.gate + "\n")
        tm = res.model.fit_config.get("timing", {})
        out.print(f"results: {saved}  ({time.perf_counter() - t0:.1f} s; compile "
                  f"{tm.get('compile_s', float('nan')):.1f} s, sampling "
                  f"{tm.get('sample_s', float('nan')):.1f} s)", markup=False, highlight=False)
    if strict and not res.gate.passed:
        raise typer.Exit(EXIT_GATE)


def register(app: typer.Typer) -> None:
    app.command()(gstudy)
