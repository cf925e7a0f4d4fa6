"""``misalign measure``: the joint measurement model (who agrees with whom, and E1 net of the
experts' own noise)."""

from __future__ import annotations

import re
import time
import warnings
from pathlib import Path
from typing import Annotated

import typer

import misalign.cli_common as common
from misalign.models.options import SamplerConfig


@common.sampler_options
def measure(
    data: Annotated[Path | None, typer.Argument(help=(
        "Ratings file (CSV or Parquet, long format) with expert and LLM ratings; omit to fit "
        "the simulated small study."))] = None,
    tasks: Annotated[Path | None, typer.Option(help="Task table (task, scale_min, scale_max).")
                     ] = None,
    experts_prior: Annotated[Path | None, typer.Option(help=(
        "A `misalign gstudy` results file of the same instrument: its rater and residual "
        "variances become the priors of the experts' severity and noise."))] = None,
    teachers: Annotated[Path | None, typer.Option(help=(
        "Teacher table (teacher_id, value_added[, va_se]): value-added for E3; teachers "
        "without one are allowed and counted."))] = None,
    llms: Annotated[Path | None, typer.Option(help=(
        "LLM table (rater, benchmark[, family]): benchmark scores for the weighted "
        "ensembles of E4; every LLM with ratings needs one."))] = None,
    design: Annotated[str | None, typer.Option(help=(
        "Also compute E3 and E4 for teachers scored over N lessons × M segments each, "
        "written NxM (e.g. 4x5)."))] = None,
    e1: Annotated[Path | None, typer.Option(help=(
        "A `misalign fit` results file of the same data: its aggregates are shown beside the "
        "joint model's split."))] = None,
    priors: common.PriorsOpt = None,
    results: Annotated[Path, typer.Option("--out", help="Results file (NetCDF).")] = Path(
        "measurement.nc"),
    strict: common.StrictOpt = False,
    as_json: common.JsonOpt = False,
    sampling: SamplerConfig = None,
) -> None:
    """Joint model of expert and LLM scores: correlations between LLMs, with an expert and with
    true quality (E2), the noise ceiling, and E1's error net of the experts' own noise."""
    common.missing_file(data, tasks, priors, experts_prior, e1, teachers, llms)
    from misalign import api
    from misalign.data import ValidationError
    from misalign.models import PriorError

    stated = _design(design) if design else None
    t0 = time.perf_counter()
    extra = {}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            md = api.measurement_data(data, tasks=tasks, teachers=teachers, llms=llms)
            if data is None:
                common.err.print("no data given: fitting the simulated 'small' study")
            gstudy = common.load_or_fail(experts_prior) if experts_prior else None
            e1_res = common.load_or_fail(e1) if e1 else None
            if not as_json:
                common.err.print(
                    "fitting " + ", ".join(f"{k} {v:,}" for k, v in md.summary().items())
                    + f"; compiling the model for {sampling.sampler}, then sampling…")
            res = api.fit_measurement(md, priors=priors, experts_prior=gstudy,
                                      sampling=sampling)
            if stated:
                res.at_design(*stated)
            if e1_res is not None:
                res.compare_with(e1_res)
                extra["e1"] = str(e1)
    except ValidationError as exc:
        raise common.problems(exc) from None
    except (ValueError, PriorError) as exc:
        raise common.fail(f"error: {exc}") from None
    common.save_and_show(res, results, as_json, strict, time.perf_counter() - t0)


def _design(text: str) -> tuple[int, int]:
    m = re.fullmatch(r"\s*(\d+)\s*[x×]\s*(\d+)\s*", text)
    if not m or min(int(m[1]), int(m[2])) < 1:
        raise common.fail(f"error: --design {text!r}: expected lessons x segments per teacher, "
                          "both at least 1, e.g. 4x5")
    return int(m[1]), int(m[2])


def register(app: typer.Typer) -> None:
    app.command()(measure)
