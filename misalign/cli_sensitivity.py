"""``misalign sensitivity`` and ``misalign prior-check`` (E6), for any results file."""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from misalign.cli_common import (
    JsonOpt,
    PriorsOpt,
    PriorStructure,
    SeedOpt,
    err,
    load_or_fail,
    out,
    quiet,
    sampler_options,
)
from misalign.cli_common import fail as _fail
from misalign.models.options import DEFAULTS, NAMED_SETS, SamplerConfig


def _df_table(df, title: str, index: str | None = None) -> Table:
    t = Table(title=title)
    cols = ([index] if index else []) + [str(c) for c in df.columns]
    for c in cols:
        t.add_column(c, justify="left" if c in (index, "prior_set", "quantity", "diagnosis",
                                                  "moved_most_by") else "right")
    for idx, row in df.iterrows():
        cells = [str(idx)] if index else []
        cells += [f"{v:.3f}" if isinstance(v, float) else str(v) for v in row.tolist()]
        t.add_row(*cells)
    return t


@sampler_options
def sensitivity(
    results: Annotated[Path, typer.Argument(help="Any results file (E1, G-study, …).")],
    prior_sets: Annotated[Path | None, typer.Option(help=(
        "TOML of user prior sets: [NAME.sigma_prompt] distribution = \"HalfNormal\" "
        "sigma = 0.1"))] = None,
    sets: Annotated[str, typer.Option(show_default=False, help=(
        "Named sets to refit, comma-separated (default: all six: "
        f"{', '.join(NAMED_SETS)})."))] = ",".join(NAMED_SETS),
    workers: Annotated[int, typer.Option(min=1, help="Local processes for the refits.")] = 1,
    scheduler: Annotated[str | None, typer.Option(help=(
        "Address of a Dask distributed scheduler to run the refits on "
        '(pip install "misalign[distributed]").'))] = None,
    refit: Annotated[bool, typer.Option(help="Run the refit sweep (else power-scaling only).")
                     ] = True,
    out_dir: Annotated[Path, typer.Option("--out", help="Folder for the tables and the plot.")
                       ] = Path("sensitivity"),
    record: Annotated[bool, typer.Option(help=(
        "Keep the tables in the results file too, so that `misalign report` shows them."))
    ] = True,
    as_json: JsonOpt = False,
    sampling: SamplerConfig = None,
) -> None:
    """Prior sensitivity: power-scaling of every reported quantity, and refits under named prior
    sets."""
    from misalign.data.atomic import atomic_write_text
    from misalign.inference.sensitivity import powerscale_table
    from misalign.inference.sweep import movement, read_prior_sets, sweep
    from misalign.reports import save_figure, sweep_figure

    res = load_or_fail(results)
    show = (lambda *a, **k: None) if as_json else out.print
    written: dict[str, str] = {}
    payload: dict = {"results_file": str(results)}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ps = powerscale_table(res)
    except NotImplementedError as exc:
        ps = None
        err.print(f"note: {exc}", markup=False)
    if ps is not None:
        show(_df_table(ps, "power-scaling sensitivity of every reported quantity (prior, "
                       "likelihood)", index="quantity"))
        written["powerscale"] = str(atomic_write_text(out_dir / "powerscale.csv",
                                                      ps.to_csv(index_label="quantity")))
        payload["powerscale"] = ps.reset_index(names="quantity").to_dict("records")
    table = None
    if refit:
        try:
            user = read_prior_sets(prior_sets) if prior_sets else None
        except (OSError, ValueError) as exc:
            raise _fail(f"error: {exc}") from None
        names = [s.strip() for s in sets.split(",") if s.strip()]
        err.print(f"refitting under {len(names) + len(user or {})} prior set(s) "
                  f"({'Dask at ' + scheduler if scheduler else f'{workers} process(es)'})…",
                  markup=False, highlight=False)
        try:
            table = sweep(res, names, user, quiet(sampling), workers=workers,
                          scheduler=scheduler)
        except ValueError as exc:
            raise _fail(f"error: {exc}") from None
        show(_df_table(table, "posterior mean [94% HDI] under each prior set"))
        mv = movement(table)
        show(_df_table(mv, "how far each quantity moves across the sets (max − min of means)"))
        written["sweep"] = str(atomic_write_text(out_dir / "sweep.csv",
                                                 table.to_csv(index=False)))
        written["movement"] = str(atomic_write_text(out_dir / "movement.csv",
                                                    mv.to_csv(index=False)))
        written["plot"] = str(save_figure(sweep_figure(table), out_dir / "sweep.png"))
        payload |= {"sweep": table.to_dict("records"), "movement": mv.to_dict("records")}
    if record and (ps is not None or table is not None):
        res.record_sensitivity(ps, table)
        written["results"] = str(res.save(results))
    payload["files"] = written
    if as_json:
        sys.stdout.write(json.dumps(payload, indent=2, default=str) + "\n")
        return
    for what, path in written.items():
        out.print(f"{what}: {path}", markup=False, highlight=False)


def prior_check(
    data: Annotated[Path, typer.Argument(help="A ratings file, or any results file (.nc).")],
    tasks: Annotated[Path | None, typer.Option(help="Task table for a ratings file.")] = None,
    priors: PriorsOpt = None,
    out_path: Annotated[Path, typer.Option("--out", help="Plot (PNG).")] = Path(
        "prior_check.png"),
    seed: SeedOpt = DEFAULTS.seed,
    prior_structure: Annotated[PriorStructure | None, typer.Option(help=(
        "E1: budget (default) or independent σ's; default for a results file: its own."))
    ] = None,
) -> None:
    """What the priors imply for the shares and the error scale, before seeing data."""
    from misalign.inference.prior_check import implied, prior_check_lines
    from misalign.inference.prior_check import prior_check as check
    from misalign.models import PriorError, VariancePartitionModel, read_priors_toml
    from misalign.reports import prior_check_figure, save_figure

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            overrides = read_priors_toml(priors) if priors else None
            structure = {} if prior_structure is None else {
                "prior_structure": prior_structure.value}
            if data.suffix == ".nc":
                model = load_or_fail(data).model
                if structure and "prior_structure" not in model.options:
                    raise _fail("error: --prior-structure applies to E1 results files only")
                model = model.with_options(overrides, **structure) if structure and (
                    model.options["prior_structure"] != prior_structure.value
                ) else model.with_priors(overrides)
            else:
                from misalign.api import load_misalignment

                model = VariancePartitionModel(load_misalignment(data, tasks=tasks),
                                               priors=overrides, **structure)
        except PriorError as exc:
            raise _fail(f"error: {exc}") from None
        except typer.Exit:
            raise
        except Exception as exc:  # validation problems and unreadable files: one plain line
            raise _fail(f"error: {exc}") from None
    table = check(model, seed=seed)
    out.print(_df_table(table, "prior predictive: implied shares and error SD (quantiles)",
                        index="quantity"))
    for line in prior_check_lines(table):
        out.print(line, markup=False, highlight=False)
    fig = prior_check_figure(implied(model, seed=seed), model.prior_scale)
    out.print(f"plot: {save_figure(fig, out_path)}", markup=False, highlight=False)


def register(app: typer.Typer) -> None:
    app.command()(sensitivity)
    app.command("prior-check")(prior_check)
