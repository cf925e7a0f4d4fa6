"""The ``misalign`` command line: a thin layer over the Python API."""

from __future__ import annotations

import time
import warnings
from pathlib import Path
from typing import Annotated

import typer

from misalign.cli_collect import register as register_collect
from misalign.cli_common import (
    JsonOpt,
    Likelihood,
    PriorsOpt,
    PriorStructure,
    PriorStructureOpt,
    StrictOpt,
    choices,
    err,
    load_or_fail,
    missing_file,
    out,
    sampler_options,
    save_and_show,
    show_results,
)
from misalign.cli_common import fail as _fail
from misalign.cli_common import problems as _problems
from misalign.cli_dstudy import register as register_dstudy
from misalign.cli_gstudy import register as register_gstudy
from misalign.cli_measure import register as register_measure
from misalign.cli_report import register as register_report
from misalign.cli_sensitivity import register as register_sensitivity
from misalign.models.options import SamplerConfig

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, no_args_is_help=True,
                  rich_markup_mode=None,  # help text is plain: "misalign[jax]" keeps its brackets
                  help="Bayesian measurement of LLM misalignment with expert judgement.")


def _version(value: bool) -> None:
    if value:
        from misalign import __version__

        print(f"misalign {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    """Bayesian measurement of LLM misalignment with expert judgement."""


Preset = choices("Preset", "small", "reference", "paper")
ErrorScale = choices("ErrorScale", "expert-sd", "raw")
Policy = choices("Policy", "error", "drop")
Format = choices("Format", "parquet", "csv")


@app.command()
def simulate(
    preset: Annotated[Preset, typer.Option(help="Study size.")] = Preset["small"],
    seed: Annotated[int | None, typer.Option(help="Random seed (default: the preset's).")] = None,
    scale: Annotated[float, typer.Option(min=0.01, help=(
        "Multiply the preset's teachers (so units and ratings) by this factor."))] = 1.0,
    truth: Annotated[bool, typer.Option(help=(
        "Compute the true shares (a simulated population 100× the reference size)."))] = True,
    out_dir: Annotated[Path, typer.Option("--out", help="Folder to write into.")] = Path(
        "simulated"),
    fmt: Annotated[Format, typer.Option("--format", help="Ratings file format.")
                   ] = Format["parquet"],
) -> None:
    """Simulate a full study with known truth (ratings, tasks, teachers, llms, truth.json)."""
    from misalign.data.simulate import simulate as run

    study = run(preset.value, seed=seed, compute_truth=truth, scale=scale)
    paths = study.write(out_dir, fmt=fmt.value)
    msg = f"simulated {len(study.ratings):,} ratings ({preset.value} preset × {scale:g}, seed " \
          f"{study.config.seed})"
    if truth:
        agg = study.truth["error_scales"]["expert-sd"]["aggregates"]
        msg += "; true shares: " + ", ".join(f"{k} {v:.3f}" for k, v in agg.items())
    err.print(msg)
    for name, p in paths.items():
        out.print(f"{name}: {p}", markup=False, highlight=False)


@app.command()
@sampler_options
def fit(
    data: Annotated[Path | None, typer.Argument(
        help="Ratings file (CSV or Parquet) in the long format; omit to fit a simulated study.")
    ] = None,
    tasks: Annotated[Path | None, typer.Option(help="Task table (task, scale_min, scale_max).")
                     ] = None,
    error_scale: Annotated[ErrorScale, typer.Option(help="Common scale of the errors.")
                           ] = ErrorScale["expert-sd"],
    likelihood: Annotated[Likelihood, typer.Option(help=(
        "gaussian: nested effects integrated out (fast, the partition to read); student: "
        "robust to a few wild ratings, one latent per unit×task (minutes at 1 M ratings)."))
    ] = Likelihood["gaussian"],
    keep_cell_means: Annotated[bool, typer.Option(help=(
        "student: store the unit×task latents in the results file (by default only their "
        "realised mean squared residual; the latents are ≈ 1.5 GB at reference size)."))
    ] = False,
    priors: PriorsOpt = None,
    prior_structure: PriorStructureOpt = PriorStructure["budget"],
    results: Annotated[Path, typer.Option("--out", help="Results file (NetCDF).")] = Path(
        "results.nc"),
    strict: StrictOpt = False,
    preset: Annotated[Preset, typer.Option(help="Simulated study to fit when no DATA is given.")
                      ] = Preset["small"],
    score_policy: Annotated[Policy, typer.Option(
        help="Missing, unparseable or out-of-scale scores: fail, or drop and report them.")
    ] = Policy["error"],
    task_subset: Annotated[str | None, typer.Option(
        "--task-subset", help="Comma-separated tasks to fit (default: all).")] = None,
    as_json: JsonOpt = False,
    sampling: SamplerConfig = None,
) -> None:
    """Fit the E1 variance partition and print the share table."""
    missing_file(data, tasks, priors)  # before the heavy imports: say it at once
    from misalign import api
    from misalign.data import ValidationError
    from misalign.data.io import write_dropped
    from misalign.models import PriorError

    t0 = time.perf_counter()
    subset = [t.strip() for t in task_subset.split(",")] if task_subset else None
    try:
        with warnings.catch_warnings():
            # The few-level notes come back as the results' notes, printed once at the end.
            warnings.simplefilter("ignore", UserWarning)
            mis = api.misalignment_data(
                data, tasks=tasks, error_scale=error_scale.value,
                score_policy=score_policy.value, task_subset=subset, preset=preset.value)
            if data is None:
                err.print(f"no data given: fitting the simulated '{preset.value}' study "
                          f"({mis.n_ratings:,} LLM ratings; truth in `misalign simulate`)")
            if mis.dropped is not None and len(mis.dropped):
                dropped = write_dropped(mis.dropped, results.with_suffix(".dropped.csv"))
                err.print(f"dropped {len(mis.dropped)} row(s) under --score-policy drop; "
                          f"each with its reason in {dropped}")
            if not as_json:
                err.print(f"fitting {mis.n_ratings:,} LLM ratings: " + ", ".join(
                    f"{k} {v}" for k, v in mis.summary().items() if k not in ("error_scale",)))
                err.print(f"compiling the model for {sampling.sampler} (tens of seconds), "
                          "then sampling…")
            res = api.fit(mis, likelihood=likelihood.value, priors=priors, sampling=sampling,
                          prior_structure=prior_structure.value,
                          keep_cell_means=keep_cell_means)
    except ValidationError as exc:
        raise _problems(exc) from None
    except (PriorError, FileNotFoundError, ImportError) as exc:
        raise _fail(f"error: {exc}") from None
    save_and_show(res, results, as_json, strict, time.perf_counter() - t0)


@app.command()
def summary(
    results: Annotated[Path, typer.Argument(help=(
        "A results file written by misalign (fit, gstudy, …)."))],
    as_json: JsonOpt = False,
) -> None:
    """Print the tables, notes and diagnostics of any results file."""
    show_results(load_or_fail(results), as_json)


register_collect(app)
register_gstudy(app)
register_measure(app)
register_dstudy(app)
register_sensitivity(app)
register_report(app)


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
