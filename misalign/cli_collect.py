"""``misalign collect`` and ``misalign export``: ratings from LLMs into a store, and out of it."""

from __future__ import annotations

import json
import signal
import sys
import warnings
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from misalign.cli_common import EXIT_INCOMPLETE, err, stdout_console
from misalign.cli_common import fail as _fail
from misalign.cli_common import problems as _problems

out = stdout_console(soft_wrap=True)  # prompts and paths are printed whole


def _usd(x: float | None) -> str:
    return "unknown" if x is None else f"${x:,.4f}"


def _print_dry_run(dr, study) -> None:
    for (task, strategy), messages in dr.samples.items():
        out.rule(f"sample prompt: task {task}, strategy {strategy}")
        for m in messages:
            out.print(f"[{m['role']}]", markup=False, highlight=False)
            out.print(m["content"], markup=False, highlight=False)
    out.rule("requests")
    out.print(f"{dr.total:,} requests in the plan ({len(study.tasks)} tasks × "
              f"{len(study.strategies)} strategies × {len(study.llms)} LLMs × "
              f"{study.replicates} replicate(s) × units); already scored {dr.scored:,}; "
              f"to send {dr.to_send:,}", markup=False, highlight=False)
    t = Table(title="cost estimate (prompt length measured, typical answer length; "
                    "upper bound at max_tokens), live and batch price")
    for c in ("llm", "model", "mode", "requests", "tokens in", "tokens out", "live", "at most",
              "batch", "at most ", "pricing (live; batch)"):
        t.add_column(c, justify="left" if c in ("llm", "model", "mode", "pricing (live; batch)")
                     else "right")
    for r in dr.per_llm:
        t.add_row(r["name"], r["model"], r["mode"], f"{r['requests']:,}", f"{r['tokens_in']:,}",
                  f"{r['tokens_out']:,}", _usd(r["cost"]), _usd(r["cost_max"]),
                  _usd(r["cost_batch"]), _usd(r["cost_batch_max"]),
                  f"{r['pricing']}; {r['pricing_batch']}")
    out.print(t)
    total = (f"total {_usd(dr.total_cost)} (at most {_usd(dr.total_cost_max)}), each LLM at the "
             "price of its mode")
    if dr.unpriced:
        total += (f"; no price for {', '.join(dr.unpriced)} (not in litellm's cost map: add "
                  "input_cost_per_token / output_cost_per_token to their [[llm]] entry)")
    out.print(total, markup=False, highlight=False)


def _summary_table(s) -> Table:
    t = Table(title=f"collection run {s.run_id}: {s.status}", show_header=False)
    t.add_column("what")
    t.add_column("count", justify="right")
    c = s.store_counts
    rows = [("requests in the plan", f"{s.planned:,}"), ("new this run", f"{s.new_requests:,}"),
            ("to do at start", f"{s.todo_at_start:,}"), ("attempts sent", f"{s.attempts:,}"),
            ("scored this run", f"{s.scored:,}"), ("failed this run", f"{s.failed:,}"),
            ("  of which parse failures", f"{s.parse_failures:,}")]
    rows += [(f"  error attempts: {k}", f"{v:,}") for k, v in sorted(s.errors.items())]
    rows += [("scored in the store", f"{c['scored']:,}"),
             ("failed in the store", f"{c['failed']:,}"),
             ("pending in the store", f"{c['pending']:,}")]
    rows += [(f"  failed: {k}", f"{v:,}") for k, v in s.failure_reasons.items()]
    if c.get("batched"):
        rows.append(("in batches not yet collected", f"{c['batched']:,}"))
    rows += [(f"batches {k}", f"{v:,}") for k, v in sorted(s.batches.items())]
    if s.shard:
        rows.append(("shard", s.shard))
    modes = sorted(set(s.modes.values()))
    if modes != ["live"]:
        rows += [(f"mode {m}", ", ".join(n for n, v in s.modes.items() if v == m))
                 for m in modes]
    rate = s.scored / s.elapsed_s if s.elapsed_s else 0.0
    rows += [("cost this run", _usd(s.cost)), ("cost in the store", _usd(s.spent_total)),
             ("elapsed", f"{s.elapsed_s:.1f} s ({rate:.1f} scored/s)")]
    for r, v in rows:
        t.add_row(r, v)
    return t


def collect(
    study: Annotated[Path, typer.Argument(help="Study file (TOML): tasks, LLMs, strategies.")],
    units: Annotated[Path | None, typer.Option(help=(
        "Units to rate (CSV, Parquet or JSONL: unit_id, text[, transcript_id, teacher_id]); "
        "default: the study file's `units`."))] = None,
    store: Annotated[Path | None, typer.Option(help=(
        "SQLite store (created if missing; default: STUDY with .sqlite)."))] = None,
    dry_run: Annotated[bool, typer.Option(help=(
        "Print a sample prompt per task × strategy, the request count and a cost estimate; "
        "send nothing."))] = False,
    concurrency: Annotated[int | None, typer.Option(min=1, help=(
        "Requests in flight at once (default: the study's [run] concurrency)."))] = None,
    cost_cap: Annotated[float | None, typer.Option(min=0, help=(
        "Stop sending when the store's total cost reaches this many USD (default: the "
        "study's cost_cap_usd)."))] = None,
    retry_failed: Annotated[bool, typer.Option(help="Retry requests that failed before.")
                            ] = True,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
    log: Annotated[Path | None, typer.Option(help="Log file (default: STORE with .log).")
                   ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the run summary as JSON.")
                       ] = False,
    mode: Annotated[str | None, typer.Option(help=(
        "live, batch or auto for every LLM (default: each LLM's `mode`, else the study's). "
        "batch: provider batch APIs, about half the price, results within the provider's "
        "window; auto: batch where the provider has one."))] = None,
    shard: Annotated[str | None, typer.Option(help=(
        "i/n: collect only shard i of n of the plan (a stable split by request key); run n "
        "processes, on one store or on n stores that `misalign export` merges."))] = None,
    status: Annotated[bool, typer.Option("--status", help=(
        "Show the store's counts, recent runs and the batches in flight; send nothing."))
    ] = False,
) -> None:
    """Collect LLM ratings into a resumable SQLite store (rerun to resume or retry)."""
    from misalign.data import ValidationError
    from misalign.data.collect import (
        CollectError,
        RedactingFilter,
        Redactor,
        Store,
        StoreError,
        read_study,
        read_units,
    )
    from misalign.data.collect import (
        dry_run as make_dry_run,
    )
    from misalign.data.collect.plan import parse_shard
    from misalign.data.collect.study import MODES

    if status:  # the store alone: no study or units needed
        path = store or study.with_suffix(".sqlite")
        if not path.exists():
            raise _fail(f"error: {path}: no such store (nothing collected yet)")
        try:
            with Store(path, readonly=True) as s:
                _print_status(s)
        except StoreError as exc:
            raise _fail(f"error: {exc}") from None
        return
    try:
        st = read_study(study)
        units_path = units or st.units
        if units_path is None:
            raise _fail("error: no units: pass --units or set `units` in the study file")
        un = read_units(units_path)
    except ValidationError as exc:
        raise _problems(exc) from None
    store_path = store or study.with_suffix(".sqlite")
    if mode is not None and mode not in MODES:
        raise _fail(f"error: --mode must be one of {', '.join(MODES)} (got {mode!r})")
    try:
        shard_of = parse_shard(shard) if shard else None
    except ValueError as exc:
        raise _fail(f"error: {exc}") from None
    if dry_run:
        scored: set[str] = set()
        if store_path.exists():
            with Store(store_path, readonly=True) as s:
                scored = s.scored_keys()
        _print_dry_run(make_dry_run(st, un, scored, mode=mode, shard=shard_of), st)
        return
    import logging

    redactor = Redactor([m.api_key_env for m in st.llms if m.api_key_env])
    for h in logging.getLogger().handlers:
        h.addFilter(RedactingFilter(redactor))
    bar = _progress(progress and not as_json)
    # Ctrl-C and `kill` (SIGTERM) end the run the same way: the run row says so and nothing
    # is lost (each attempt is one transaction).
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)
    # The requests a Ctrl-C cancels before litellm starts them are garbage-collected after
    # the run has returned (as the traceback is freed, or at exit), outside the runner's own
    # filter; they were never sent, so their "never awaited" warning would only alarm.
    warnings.filterwarnings("ignore", message="coroutine .* was never awaited",
                            category=RuntimeWarning)
    try:
        with Store(store_path) as s, bar as (on_progress, set_total):
            from misalign.data.collect.runner import Collector

            summary = Collector(st, un, s, concurrency=concurrency, cost_cap=cost_cap,
                                retry_failed=retry_failed, on_progress=on_progress,
                                on_prepared=set_total, redactor=redactor,
                                log_path=str(log or store_path.with_suffix(".log")),
                                mode=mode, shard=shard_of).run()
    except (StoreError, CollectError) as exc:
        raise _fail(f"error: {redactor(str(exc))}") from None
    except KeyboardInterrupt:
        raise _fail("interrupted: every finished rating is in the store; rerun the same "
                    "command to resume", 130) from None
    if as_json:
        sys.stdout.write(json.dumps(summary.to_dict(), indent=2, default=str) + "\n")
    else:
        out.print(_summary_table(summary))
        if summary.unpriced:
            err.print(f"note: no price for {', '.join(summary.unpriced)}: their cost is "
                      "recorded as unknown and the cost cap does not bound them",
                      markup=False, highlight=False)
        for name, why in summary.stopped_llms.items():
            err.print(f"note: stopped asking {name} this run: {why}", markup=False,
                      highlight=False)
        if summary.status == "cost_cap":
            err.print("stopped at the cost cap: raise --cost-cap to continue", markup=False)
        out.print(f"store: {store_path}", markup=False, highlight=False)
    if summary.status != "complete":
        raise typer.Exit(EXIT_INCOMPLETE)


def _print_status(store) -> None:
    """Counts, the last runs and the batches not yet collected, from the store alone."""
    import json as _json
    from datetime import UTC, datetime

    from misalign.data.collect.batch_ledger import BatchLedger

    c = store.counts()
    out.print("requests: " + ", ".join(f"{v:,} {k}" for k, v in c.items()), markup=False,
              highlight=False)
    runs = store.db.execute("SELECT run_id, started_at, status, options FROM runs "
                            "ORDER BY run_id DESC LIMIT 5").fetchall()
    t = Table(title="recent runs")
    for col in ("run", "started", "status", "shard", "modes"):
        t.add_column(col)
    for run_id, started, st, options in runs:
        o = _json.loads(options or "{}")
        t.add_row(str(run_id), started, st, o.get("shard") or "all",
                  ", ".join(sorted(set((o.get("modes") or {}).values()))) or "live")
    out.print(t)
    try:
        flights = BatchLedger(store).in_flight()
    except Exception:  # a version-1 store has no batches
        flights = []
    if not flights:
        out.print("no batches in flight", markup=False)
        return
    t = Table(title="batches in flight (as last seen; `misalign collect` resumes them)")
    for col in ("#", "llm", "state", "provider status", "requests", "done", "failed",
                "batch id", "age"):
        t.add_column(col)
    stamp = datetime.now(UTC)
    for f in flights:
        rc = f.request_counts or {}
        age = stamp - datetime.fromisoformat(f.created_at)
        t.add_row(str(f.batch_row), f.llm, f.state, f.provider_status or "-",
                  f"{f.n_requests:,}", str(rc.get("completed", "-")), str(rc.get("failed", "-")),
                  f.batch_id or "-", f"{age.total_seconds() / 60:.0f} min")
    out.print(t)


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


class _progress:
    """A rich progress bar (done/total, rate, ETA, failures, cost), shown once the run knows
    how much there is to do; or nothing."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.p = None

    def __enter__(self):
        if not self.enabled:
            return (None, None)
        import time

        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        def set_total(n: int) -> None:
            self.p = Progress(TextColumn("collecting"), BarColumn(), MofNCompleteColumn(),
                              TextColumn("{task.fields[rate]}"), TimeElapsedColumn(),
                              TextColumn("ETA"), TimeRemainingColumn(),
                              TextColumn("failed {task.fields[failed]}"),
                              TextColumn("cost {task.fields[cost]}"),
                              TextColumn("{task.fields[batches]}"), console=err)
            self.task = self.p.add_task("collect", total=n, failed=0, cost="$0", rate="",
                                        batches="")
            self.t0 = time.perf_counter()
            self.p.start()

        def on_progress(d: dict) -> None:
            if self.p is None:
                return
            el = time.perf_counter() - self.t0
            fields = {}
            if "batches" in d:  # batch mode: how many batches are in each provider state
                fields["batches"] = "batches " + ", ".join(
                    f"{v} {k}" for k, v in sorted(d["batches"].items()))
            self.p.update(self.task, completed=d["done"], failed=d["failed"],
                          cost=f"${d['cost']:.4f}", rate=f"{d['done'] / el:.1f}/s" if el else "",
                          **fields)

        return (on_progress, set_total)

    def __exit__(self, *exc: object) -> None:
        if self.p is not None:
            self.p.stop()


def export(
    store: Annotated[list[Path], typer.Argument(help=(
        "A store written by `misalign collect`, or several of one study (e.g. the stores of "
        "`--shard` runs on several machines), merged."))],
    out_path: Annotated[Path, typer.Option("--out", help=(
        "Ratings file to write (.parquet or .csv), in the long format `misalign fit` reads."))
    ] = Path("ratings.parquet"),
    experts: Annotated[Path | None, typer.Option(help=(
        "Expert ratings (long format, CSV or Parquet) to merge in."))] = None,
) -> None:
    """Write the scored ratings of a store (plus expert ratings) for `misalign fit`."""
    from misalign.data import ValidationError
    from misalign.data.collect import StoreError, export_ratings

    for p in store:
        if not p.exists():
            raise _fail(f"error: {p}: no such store")
    try:
        ex = export_ratings(store if len(store) > 1 else store[0], out_path, experts=experts)
    except ValidationError as exc:
        raise _problems(exc) from None
    except StoreError as exc:
        raise _fail(f"error: {exc}") from None
    c = ex.counts()
    err.print(f"{c['llm_ratings']:,} LLM and {c['expert_ratings']:,} expert ratings", markup=False)
    if c["excluded"]:
        parts = ", ".join(f"{v:,} {k.removeprefix('excluded_')}" for k, v in c.items()
                          if k.startswith("excluded_"))
        err.print(f"not exported: {c['excluded']:,} ({parts}); each with its reason in "
                  f"{ex.paths['excluded']}", markup=False, highlight=False)
    for name, p in ex.paths.items():
        out.print(f"{name}: {p}", markup=False, highlight=False)
    tasks = ex.paths["tasks"]
    out.print(f"next: misalign fit {out_path} --tasks {tasks}", markup=False, highlight=False)


def register(app: typer.Typer) -> None:
    app.command()(collect)
    app.command()(export)
