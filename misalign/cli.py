"""The ``misalign`` command line: a thin layer over the Python API."""

from __future__ import annotations

import json
import sys
import time
import warnings
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from misalign.cli_collect import register as register_collect
from misalign.cli_common import EXIT_GATE, err, out
from misalign.cli_common import fail as _fail
from misalign.cli_common import problems as _problems
from misalign.cli_gstudy import register as register_gstudy
from misalign.cli_sensitivity import register as register_sensitivity

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, no_args_is_help=True,
                  help="Bayesian measurement of LLM misalignment with expert judgement.")


class Preset(StrEnum):
    small = "small"
    reference = "reference"


class ErrorScale(StrEnum):
    expert_sd = "expert-sd"
    raw = "raw"


class Likelihood(StrEnum):
    gaussian = "gaussian"
    student = "student"


class Sampler(StrEnum):
    nutpie = "nutpie"
    numpyro = "numpyro"
    pymc = "pymc"


class Policy(StrEnum):
    error = "error"
    drop = "drop"


class Format(StrEnum):
    parquet = "parquet"
    csv = "csv"


@app.command()
def simulate(
    preset: Annotated[Preset, typer.Option(help="Study size.")] = Preset.small,
    seed: Annotated[int | None, typer.Option(help="Random seed (default: the preset's).")] = None,
    scale: Annotated[float, typer.Option(min=0.01, help=(
        "Multiply the preset's teachers (so units and ratings) by this factor."))] = 1.0,
    truth: Annotated[bool, typer.Option(help=(
        "Compute the true shares (a simulated population 100× the reference size)."))] = True,
    out_dir: Annotated[Path, typer.Option("--out", help="Folder to write into.")] = Path(
        "simulated"),
    fmt: Annotated[Format, typer.Option("--format", help="Ratings file format.")] = Format.parquet,
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
def fit(
    data: Annotated[Path | None, typer.Argument(
        help="Ratings file (CSV or Parquet) in the long format; omit to fit a simulated study.")
    ] = None,
    tasks: Annotated[Path | None, typer.Option(help="Task table (task, scale_min, scale_max).")
                     ] = None,
    error_scale: Annotated[ErrorScale, typer.Option(help="Common scale of the errors.")
                           ] = ErrorScale.expert_sd,
    likelihood: Annotated[Likelihood, typer.Option()] = Likelihood.gaussian,
    sampler: Annotated[Sampler, typer.Option(help=(
        "nutpie: CPU, fastest here; numpyro: JAX, uses a GPU when one is visible "
        '(pip install "misalign[jax]"); pymc: PyMC\'s own NUTS.'))] = Sampler.nutpie,
    draws: Annotated[int, typer.Option(min=1)] = 1000,
    tune: Annotated[int, typer.Option(min=0)] = 1000,
    chains: Annotated[int, typer.Option(min=1)] = 4,
    seed: Annotated[int, typer.Option(help="Seed for the sampler.")] = 1,
    target_accept: Annotated[float, typer.Option(min=0.5, max=0.999, help=(
        "NUTS target acceptance; raise it if the gate reports divergences."))] = 0.95,
    priors: Annotated[Path | None, typer.Option(help="TOML file of prior overrides by name.")
                      ] = None,
    results: Annotated[Path, typer.Option("--out", help="Results file (NetCDF).")] = Path(
        "results.nc"),
    strict: Annotated[bool, typer.Option(help="Exit non-zero if the diagnostics gate fails.")
                      ] = False,
    preset: Annotated[Preset, typer.Option(help="Simulated study to fit when no DATA is given.")
                      ] = Preset.small,
    score_policy: Annotated[Policy, typer.Option(
        help="Missing, unparseable or out-of-scale scores: fail, or drop and report them.")
    ] = Policy.error,
    task_subset: Annotated[str | None, typer.Option(
        "--task-subset", help="Comma-separated tasks to fit (default: all).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the results as JSON.")] = False,
    progress: Annotated[bool, typer.Option(help="Show the sampler's progress bar.")] = True,
) -> None:
    """Fit the E1 variance partition and print the share table."""
    from misalign.api import build_misalignment, load_misalignment
    from misalign.data import ValidationError
    from misalign.data.simulate import simulate as run_simulation
    from misalign.inference import fit_e1
    from misalign.models import PriorError, read_priors_toml
    from misalign.reports import E1Report, to_rich_table

    t0 = time.perf_counter()
    subset = [t.strip() for t in task_subset.split(",")] if task_subset else None
    caught: list[str] = []
    try:
        with warnings.catch_warnings(record=True) as wlist:
            warnings.simplefilter("always", UserWarning)
            if data is None:
                study = run_simulation(preset.value, seed=None, compute_truth=False)
                err.print(f"no data given: fitting the simulated '{preset.value}' study "
                          f"({len(study.ratings):,} ratings; truth in `misalign simulate`)")
                mis = build_misalignment(study.table(), error_scale=error_scale.value,
                                         tasks=subset)
            else:
                mis, table = load_misalignment(data, tasks=tasks, error_scale=error_scale.value,
                                               score_policy=score_policy.value,
                                               task_subset=subset)
                if len(table.dropped):
                    dropped = table.write_dropped(results.with_suffix(".dropped.csv"))
                    err.print(f"dropped {len(table.dropped)} row(s) under --score-policy drop; "
                              f"each with its reason in {dropped}")
            overrides = read_priors_toml(priors) if priors else None
            if not as_json:
                err.print(f"fitting {mis.n_ratings:,} LLM ratings: " + ", ".join(
                    f"{k} {v}" for k, v in mis.summary().items() if k not in ("error_scale",)))
                err.print(f"compiling the model for {sampler.value} (tens of seconds), "
                          "then sampling…")
            res = fit_e1(mis, likelihood=likelihood.value, priors=overrides,
                         sampler=sampler.value, draws=draws, tune=tune, chains=chains, seed=seed,
                         progressbar=progress and not as_json, target_accept=target_accept)
        caught = [str(w.message) for w in wlist if issubclass(w.category, UserWarning)]
    except ValidationError as exc:
        raise _problems(exc) from None
    except PriorError as exc:
        raise _fail(f"error: {exc}") from None
    except (FileNotFoundError, ImportError) as exc:
        raise _fail(f"error: {exc}") from None
    try:
        saved = res.save(results)
    except OSError as exc:
        raise _fail(f"error: cannot write {results}: {exc}") from None
    report = E1Report.from_results(res)
    report.fit["wall_seconds"] = round(time.perf_counter() - t0, 2)
    if as_json:
        payload = report.to_dict() | {"results_file": str(saved)}
        sys.stdout.write(json.dumps(payload, indent=2, default=str) + "\n")
    else:
        out.print(to_rich_table(report))
        for note in dict.fromkeys(caught + res.notes):
            err.print(f"note: {note}", markup=False, highlight=False)
        sys.stderr.write(res.gate.message() + "\n")
        tm = report.fit.get("timing", {})
        out.print(f"results: {saved}  ({report.fit['wall_seconds']} s; compile "
                  f"{tm.get('compile_s', float('nan')):.1f} s, sampling "
                  f"{tm.get('sample_s', float('nan')):.1f} s)", markup=False, highlight=False)
    if strict and not res.gate.passed:
        raise typer.Exit(EXIT_GATE)


@app.command()
def summary(
    results: Annotated[Path, typer.Argument(help="A results file written by `misalign fit`.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """Print the E1 table and the diagnostics of a results file."""
    from misalign.inference import load_results
    from misalign.reports import E1Report, to_json, to_rich_table

    if not results.exists():
        raise _fail(f"error: {results}: file not found")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            res = load_results(results)
    except (OSError, ValueError, KeyError) as exc:
        raise _fail(f"error: {results}: not a misalign results file ({exc})") from None
    report = E1Report.from_results(res)
    if as_json:
        sys.stdout.write(to_json(report) + "\n")
        return
    out.print(to_rich_table(report))
    sys.stderr.write(res.gate.message() + "\n")


register_collect(app)
register_gstudy(app)
register_sensitivity(app)


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
