"""What every command shares: consoles, exit codes, plain error messages, the sampler options
(their defaults are ``SamplerConfig``'s, so Python and the CLI agree), and the results output."""

from __future__ import annotations

import dataclasses
import functools
import inspect
import json
import os
import shlex
import sys
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from misalign.models.options import DEFAULTS, LIKELIHOODS, PRIOR_STRUCTURES, SAMPLERS, SamplerConfig

if TYPE_CHECKING:
    from misalign.inference.analysis import AnalysisResults

def stdout_console(**options) -> Console:
    """Rich draws for 80 columns when output is piped (or TERM=dumb); tables are then cut.
    Piped output is read by people in files and logs, so give it room (COLUMNS still wins)."""
    if sys.stdout.isatty() or "COLUMNS" in os.environ:
        return Console(**options)
    # rich ignores a width under TERM=dumb unless the height is given too.
    return Console(width=200, height=50, **options)


err = Console(stderr=True, soft_wrap=True)  # never break a path or message mid-line
out = stdout_console()

EXIT_INPUT = 2  # bad input: validation, priors, options
EXIT_GATE = 3  # --strict and the diagnostics gate failed
EXIT_INCOMPLETE = 4  # a collection ended with failed or pending requests (rerun to retry)


def fail(message: str, code: int = EXIT_INPUT) -> typer.Exit:
    # Plain text, never wrapped: each problem stays on one line that tools can grep.
    sys.stderr.write(message.rstrip("\n") + "\n")
    return typer.Exit(code)


def problems(exc) -> typer.Exit:
    lines = [str(p) for p in exc.problems]
    shown = lines[:50]
    more = f"\n  … and {len(lines) - 50} more" if len(lines) > 50 else ""
    head = f"error: {len(lines)} problem{'s' if len(lines) != 1 else ''} in the input:"
    return fail("\n".join([head, *(f"  - {s}" for s in shown)]) + more)


def choices(name: str, *values: str) -> type[StrEnum]:
    """A typer choice type whose values are ``values``."""
    return StrEnum(name, [(v, v) for v in values])


# -- options shared by the fitting commands ----------------------------------------------------
Sampler = choices("Sampler", *SAMPLERS)
Likelihood = choices("Likelihood", *LIKELIHOODS)
PriorStructure = choices("PriorStructure", *PRIOR_STRUCTURES)
PriorStructureOpt = Annotated[PriorStructure, typer.Option(help=(
    "budget: the total error variance split neutrally between the aggregates "
    "(sigma_total, aggregate_shares, shares_<aggregate>); independent: one prior per σ "
    "(sigma_llm, …)."))]

SamplerOpt = Annotated[Sampler, typer.Option(help=(
    "nutpie: CPU, fastest here; numpyro: JAX, uses a GPU when one is visible "
    '(pip install "misalign[jax]"); pymc: PyMC\'s own NUTS.'))]
DrawsOpt = Annotated[int, typer.Option(min=1, help="Posterior draws per chain.")]
TuneOpt = Annotated[int, typer.Option(min=0, help="Warm-up draws per chain.")]
ChainsOpt = Annotated[int, typer.Option(min=1, help="Chains (4 or more for the gate's R-hat).")]
SeedOpt = Annotated[int, typer.Option(help="Random seed.")]
TargetAcceptOpt = Annotated[float | None, typer.Option(min=0.5, max=0.999, help=(
    "NUTS target acceptance; raise it if the gate reports divergences. Default: the model's "
    "(E1 0.9, G-study 0.8)."))]
PriorsOpt = Annotated[Path | None, typer.Option(help="TOML file of prior overrides by name.")]
StrictOpt = Annotated[bool, typer.Option(help="Exit 3 if the diagnostics gate fails.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the results as JSON.")]
ProgressOpt = Annotated[bool, typer.Option(help="Show the sampler's progress bar.")]
_SAMPLER_PARAMS = [
    inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=kind)
    for name, kind, default in (
        ("sampler", SamplerOpt, Sampler(DEFAULTS.sampler)), ("draws", DrawsOpt, DEFAULTS.draws),
        ("tune", TuneOpt, DEFAULTS.tune), ("chains", ChainsOpt, DEFAULTS.chains),
        ("seed", SeedOpt, DEFAULTS.seed),
        ("target_accept", TargetAcceptOpt, DEFAULTS.target_accept),
        ("progress", ProgressOpt, DEFAULTS.progressbar))]


def sampler_options(command: Callable) -> Callable:
    """Give a command the sampler options (``--sampler``, ``--draws``, … with
    ``SamplerConfig``'s defaults); it receives them as one ``sampling: SamplerConfig``."""
    sig = inspect.signature(command, eval_str=True)
    params = [p for p in sig.parameters.values() if p.name != "sampling"]
    params += [p.replace(kind=inspect.Parameter.POSITIONAL_OR_KEYWORD) for p in _SAMPLER_PARAMS]

    @functools.wraps(command)
    def run(**kwargs):
        opts = {p.name: kwargs.pop(p.name) for p in _SAMPLER_PARAMS}
        kwargs["sampling"] = SamplerConfig(
            sampler=opts["sampler"].value, draws=opts["draws"], tune=opts["tune"],
            chains=opts["chains"], seed=opts["seed"], target_accept=opts["target_accept"],
            # A progress bar would corrupt --json output.
            progressbar=opts["progress"] and not kwargs.get("as_json", False))
        return command(**kwargs)

    run.__signature__ = sig.replace(parameters=params)
    run.__annotations__ = {p.name: p.annotation for p in params}
    return run


def quiet(sampling: SamplerConfig) -> SamplerConfig:
    return dataclasses.replace(sampling, progressbar=False)


def missing_file(*paths: Path | None) -> None:
    """Exit 2 at once for an input file that does not exist."""
    for p in paths:
        if p is not None and not p.is_file():
            what = "is a folder, not a file" if p.is_dir() else "file not found"
            raise fail(f"error: {p}: {what}")


def load_or_fail(path: Path) -> AnalysisResults:
    """Any results file, or exit 2 with a plain message."""
    import warnings

    missing_file(path)
    from misalign.inference import load
    from misalign.models import ResultsFileError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            return load(path)
    except ResultsFileError as exc:
        raise fail(f"error: {exc}") from None


def show_results(res: AnalysisResults, as_json: bool, extra: dict | None = None,
                 footer: str | None = None) -> None:
    """The results on stdout (tables and the headline, or JSON), notes and the gate on
    stderr."""
    from misalign.reports import print_summary

    if as_json:
        payload = res.to_dict() | {"headline": res.headline} | (extra or {})
        sys.stdout.write(json.dumps(payload, indent=2, default=str) + "\n")
    else:
        print_summary(res, out, err, footer)


def save_and_show(res: AnalysisResults, path: Path, as_json: bool, strict: bool,
                  wall_s: float) -> None:
    """What ``fit``-like commands end with: write the file, show the results, honour
    ``--strict``."""
    res.model.fit_config["command"] = "misalign " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    try:
        saved = res.save(path)
    except OSError as exc:
        raise fail(f"error: cannot write {path}: {exc}") from None
    res.model.fit_config["wall_seconds"] = round(wall_s, 2)
    tm = res.model.fit_config.get("timing", {})
    footer = (f"results: {saved}  ({wall_s:.1f} s; compile "
              f"{tm.get('compile_s', float('nan')):.1f} s, sampling "
              f"{tm.get('sample_s', float('nan')):.1f} s)")
    show_results(res, as_json, {"results_file": str(saved)}, footer)
    if strict and not res.gate.passed:
        raise typer.Exit(EXIT_GATE)
