"""``misalign sensitivity`` and ``misalign prior-check`` (E6)."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from misalign.cli_common import err, out
from misalign.cli_common import fail as _fail


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


def sensitivity(
    results: Annotated[Path, typer.Argument(help="A results file (E1 or G-study).")],
    prior_sets: Annotated[Path | None, typer.Option(help=(
        "TOML of user prior sets: [NAME.sigma_prompt] distribution = \"HalfNormal\" "
        "sigma = 0.1"))] = None,
    sets: Annotated[str, typer.Option(help="Named sets to refit (comma-separated).")] = (
        "default,wide,narrow,exponential,halfstudentt,sceptical"),
    workers: Annotated[int, typer.Option(min=1, help="Local processes for the refits.")] = 1,
    scheduler: Annotated[str | None, typer.Option(help=(
        "Address of a Dask distributed scheduler to run the refits on "
        '(pip install "misalign[distributed]").'))] = None,
    draws: Annotated[int, typer.Option(min=1)] = 1000,
    tune: Annotated[int, typer.Option(min=0)] = 1000,
    chains: Annotated[int, typer.Option(min=1)] = 4,
    seed: Annotated[int, typer.Option()] = 1,
    refit: Annotated[bool, typer.Option(help="Run the refit sweep (else power-scaling only).")
                     ] = True,
    out_dir: Annotated[Path, typer.Option("--out", help="Folder for the tables and the plot.")
                       ] = Path("sensitivity"),
) -> None:
    """Prior sensitivity: power-scaling of every σ, and refits under named prior sets."""
    from misalign.data.atomic import atomic_write_text
    from misalign.inference.sweep import (
        SweepSettings,
        movement,
        plot_sweep,
        read_prior_sets,
        sweep,
    )

    if not results.exists():
        raise _fail(f"error: {results}: file not found")
    import xarray as xr

    with xr.open_datatree(results, engine="netcdf4") as tree:
        kind = tree.attrs.get("misalign_model", "")
    if kind not in ("VariancePartitionModel", "GStudyModel"):
        raise _fail(f"error: {results}: not a misalign results file")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if kind == "VariancePartitionModel":
            from misalign.inference import load_results
            from misalign.inference.sensitivity import powerscale_table

            ps = powerscale_table(load_results(results).model)
            out.print(_df_table(ps, "power-scaling sensitivity of the σ's (prior, likelihood)",
                                index="σ"))
            atomic_write_text(out_dir / "powerscale.csv", ps.to_csv(index_label="component"))
        else:
            from misalign.inference import load_gstudy
            from misalign.inference.sensitivity import powerscale_table

            try:
                ps = powerscale_table(load_gstudy(results).model)
            except NotImplementedError as exc:
                ps = None
                err.print(f"note: {exc}", markup=False)
            if ps is not None:
                out.print(_df_table(ps, "power-scaling sensitivity of the σ's (prior, "
                                        "likelihood)", index="σ"))
                atomic_write_text(out_dir / "powerscale.csv",
                                  ps.to_csv(index_label="component"))
    if not refit:
        return
    try:
        user = read_prior_sets(prior_sets) if prior_sets else None
    except (OSError, ValueError) as exc:
        raise _fail(f"error: {exc}") from None
    names = [s.strip() for s in sets.split(",") if s.strip()]
    settings = SweepSettings(draws=draws, tune=tune, chains=chains, seed=seed)
    err.print(f"refitting under {len(names) + len(user or {})} prior set(s) "
              f"({'Dask at ' + scheduler if scheduler else f'{workers} process(es)'})…",
              markup=False, highlight=False)
    try:
        table = sweep(results, names, user, settings, workers=workers, scheduler=scheduler)
    except ValueError as exc:
        raise _fail(f"error: {exc}") from None
    out.print(_df_table(table, "posterior mean [94% HDI] under each prior set"))
    mv = movement(table)
    out.print(_df_table(mv, "how far each quantity moves across the sets (max − min of means)"))
    atomic_write_text(out_dir / "sweep.csv", table.to_csv(index=False))
    atomic_write_text(out_dir / "movement.csv", mv.to_csv(index=False))
    png = plot_sweep(table, out_dir / "sweep.png")
    out.print(f"tables and plot: {out_dir}/ ({png.name})", markup=False, highlight=False)


def prior_check(
    data: Annotated[Path, typer.Argument(help="A ratings file, or an E1 results file (.nc).")],
    tasks: Annotated[Path | None, typer.Option(help="Task table for a ratings file.")] = None,
    priors: Annotated[Path | None, typer.Option(help="TOML of prior overrides.")] = None,
    out_path: Annotated[Path, typer.Option("--out", help="Plot (PNG).")] = Path(
        "prior_check.png"),
    seed: Annotated[int, typer.Option()] = 0,
) -> None:
    """What the priors imply for the shares and the error scale, before seeing data."""
    from misalign.inference.prior_check import plot_prior_check
    from misalign.inference.prior_check import prior_check as check
    from misalign.models import PriorError, VariancePartitionModel, read_priors_toml

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            overrides = read_priors_toml(priors) if priors else None
            kind = ""
            if data.suffix == ".nc":
                import xarray as xr

                with xr.open_datatree(data, engine="netcdf4") as tree:
                    kind = tree.attrs.get("misalign_model", "")
            if kind == "GStudyModel":
                from misalign.inference import load_gstudy
                from misalign.models import GStudyModel

                g = load_gstudy(data).model
                model = GStudyModel(g.ratings, facets=g.facets, likelihood=g.likelihood,
                                    correlated=g.correlated, priors={
                                        k: v.to_dict() for k, v in g.priors.items()}
                                    | (overrides or {}))
            elif data.suffix == ".nc":
                from misalign.inference import load_results

                base = load_results(data).model
                model = VariancePartitionModel(base.data, likelihood=base.likelihood,
                                               priors={k: v.to_dict() for k, v in
                                                       base.priors.items()} | (overrides or {}))
            else:
                from misalign.api import load_misalignment

                mis, _ = load_misalignment(data, tasks=tasks)
                model = VariancePartitionModel(mis, priors=overrides)
        except PriorError as exc:
            raise _fail(f"error: {exc}") from None
        except Exception as exc:  # validation problems and unreadable files: one plain line
            raise _fail(f"error: {exc}") from None
    table = check(model, seed=seed)
    out.print(_df_table(table, "prior predictive: implied shares and error SD (quantiles)",
                        index="quantity"))
    sys.stderr.write(f"data SD: {table.attrs['data_error_sd']:.3f}\n")
    out.print(f"plot: {plot_prior_check(model, out_path, seed=seed)}", markup=False,
              highlight=False)


def register(app: typer.Typer) -> None:
    app.command()(sensitivity)
    app.command("prior-check")(prior_check)
