"""misalign benchmarks: one command, one table (also written as CSV and JSON).

    python benchmarks/run.py            # everything (about 35 min on 2 cores)
    python benchmarks/run.py --quick    # small sizes, a few minutes: checks that it all runs
    python benchmarks/run.py --rows scaling --sampler numpyro   # e.g. on a GPU machine

Rows
- ``reference``: ``misalign fit --preset reference --strict`` end to end in a fresh process:
  wall time, compile and sampling time, min bulk ESS/s over the shares, peak memory, gate.
- ``design``: the 34 k-rating design (200 units × 7 tasks × 8 LLMs × 3 prompts) fitted by
  misalign, by a naive PyMC model and by bambi, in this run; ratio of min-ESS/s to each.
- ``scaling``: 0.1×, 1×, 10× the reference data through ``misalign fit FILE.parquet``.
- ``student``: the Student-t likelihood at reference size, and its cost relative to Gaussian.
- ``startup``: a fit after install (empty caches), on a new data set and a refit, small and
  reference presets, with the compiled fast path and with the PyMC graph (benchmarks/startup.py).
- ``lme4``: lme4's REML point estimate (``Rscript``) beside misalign on the same data.
- ``gstudy``: the G-study on the NCTE file; ``sensitivity``: ``misalign sensitivity`` at
  reference size (both with the fast path; the G-study also with the PyMC graph).
Compare ratios within one run only: absolute times move with the machine's load.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import warnings
from datetime import UTC, datetime
from pathlib import Path

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

# Runs a command and reports its wall time and the peak RSS of its process tree's largest member.
_WRAP = """
import json, resource, subprocess, sys, time
t = time.perf_counter()
try:
    p = subprocess.run(sys.argv[2:], capture_output=True, text=True, timeout=float(sys.argv[1]))
    rc, so, se = p.returncode, p.stdout, p.stderr
except subprocess.TimeoutExpired as e:
    rc, so, se = -9, "", f"timed out after {float(sys.argv[1]):.0f} s"
print(json.dumps({"rc": rc, "wall_s": time.perf_counter() - t, "stdout": so,
                  "stderr": se[-3000:],
                  "peak_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}))
"""
TIMEOUT = [600.0]  # per command; --timeout


def measured(cmd: list[str]) -> dict:
    out = subprocess.run([sys.executable, "-c", _WRAP, str(TIMEOUT[0]), *cmd],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "misalign.cli", *args]


def share_efficiency(results_file: Path, sample_s: float) -> tuple[float, float]:
    """Min bulk ESS over every share (both kinds) and that per second of sampling."""
    import arviz as az
    import xarray as xr

    with xr.open_datatree(results_file, engine="netcdf4") as tree:
        sh = tree["shares"].to_dataset().load()
    ess = [np.asarray(az.ess(sh[k], method="bulk", sample_dims=["chain", "draw"]))
           for k in ("superpopulation", "finite_population")]
    m = float(np.nanmin(np.concatenate([e.ravel() for e in ess])))
    return m, m / sample_s


def steps_total(results_file: Path) -> float:
    import xarray as xr

    with xr.open_datatree(results_file, engine="netcdf4") as tree:
        return float(tree["sample_stats"]["n_steps"].sum())


EXTRA_FIT_ARGS: list[str] = []  # --chains/--draws/--tune passed through from the command line


def fit_row(name: str, variant: str, args: list[str], workdir: Path, sampler: str) -> dict:
    res = workdir / f"{name}-{variant}.nc"
    r = measured(cli("fit", *args, *EXTRA_FIT_ARGS, "--sampler", sampler, "--json",
                     "--no-progress", "--out", str(res)))
    row = {"benchmark": name, "variant": variant, "sampler": sampler, "wall_s": r["wall_s"],
           "peak_mb": r["peak_mb"]}
    if r["rc"] not in (0, 3):
        row["error"] = r["stderr"].strip().splitlines()[-1] if r["stderr"].strip() else r["rc"]
        return row
    payload = json.loads(r["stdout"])
    fit = payload["fit"]
    timing = fit.get("timing", {})
    row.update(n_ratings=payload["data"]["ratings"], compile_s=timing.get("compile_s"),
               sample_s=timing.get("sample_s"), gate="pass" if payload["gate"]["passed"]
               else "FAIL", platform=timing.get("platform", "cpu"))
    row["min_ess"], row["min_ess_per_s"] = share_efficiency(res, timing["sample_s"])
    # Amortised time per gradient: sampling time × parallel streams ÷ leapfrog steps, the
    # tuning steps counted as draws-like (nutpie and numpyro keep only the draws' stats).
    chains, draws, tune = fit["chains"], fit["draws"], fit["tune"]
    parallel = 1 if timing.get("chain_method") == "vectorized" else min(chains, os.cpu_count())
    steps = steps_total(res) * (draws + tune) / draws
    row["us_per_grad"] = 1e6 * timing["sample_s"] * parallel / steps
    res.unlink(missing_ok=True)
    return row


def reference_rows(quick: bool, workdir: Path, sampler: str) -> list[dict]:
    preset = "small" if quick else "reference"
    return [fit_row("reference", preset, ["--preset", preset, "--strict"], workdir, sampler)]


def measure_rows(quick: bool, workdir: Path, sampler: str) -> list[dict]:
    """The joint measurement model on the same study E1's reference row fits (its ratio is to
    that row's wall time when both ran); with nutpie, on the compiled kernels and on the PyMC
    graph compiled by numba (``MISALIGN_FAST_PATH=0``), small preset and reference."""
    presets = ["small"] if quick else ["reference", "small"]
    rows = []
    for preset in presets:
        pair = []
        for variant, switch in ((f"{preset}, kernels", "1"), (f"{preset}, PyMC graph", "0")):
            if sampler != "nutpie" and switch == "1":
                continue
            old = os.environ.get("MISALIGN_FAST_PATH")
            os.environ["MISALIGN_FAST_PATH"] = switch
            try:
                pair.append(_measure_row(preset, variant, workdir, sampler))
            finally:
                os.environ.pop("MISALIGN_FAST_PATH")
                if old is not None:
                    os.environ["MISALIGN_FAST_PATH"] = old
        if len(pair) == 2 and all("wall_s" in r and "error" not in r for r in pair):
            pair[1]["ratio"] = pair[1]["wall_s"] / pair[0]["wall_s"]
            pair[1]["ratio_of"] = "wall time / kernels'"
        rows += pair
    return rows


def _measure_row(preset: str, variant: str, workdir: Path, sampler: str) -> dict:
    d = workdir / f"measure-{preset}"
    if not (d / "ratings.parquet").exists():
        sim = measured(cli("simulate", "--preset", preset, "--no-truth", "--out", str(d)))
        if sim["rc"] != 0:
            return {"benchmark": "measure", "variant": variant, "error": sim["stderr"][-300:]}
    res = workdir / "measure.nc"
    r = measured(cli("measure", str(d / "ratings.parquet"), "--tasks", str(d / "tasks.csv"),
                     *EXTRA_FIT_ARGS, "--sampler", sampler, "--json", "--no-progress", "--out",
                     str(res)))
    row = {"benchmark": "measure", "variant": variant, "sampler": sampler, "wall_s": r["wall_s"],
           "peak_mb": r["peak_mb"]}
    if r["rc"] not in (0, 3):
        row["error"] = r["stderr"].strip().splitlines()[-1] if r["stderr"].strip() else r["rc"]
        return row
    payload = json.loads(r["stdout"])
    fit, timing = payload["fit"], payload["fit"].get("timing", {})
    row.update(n_ratings=payload["data"]["ratings"], compile_s=timing.get("compile_s"),
               sample_s=timing.get("sample_s"),
               gate="pass" if payload["gate"]["passed"] else "FAIL")
    chains, draws, tune = fit["chains"], fit["draws"], fit["tune"]
    steps = steps_total(res) * (draws + tune) / draws
    row["us_per_grad"] = 1e6 * timing["sample_s"] * min(chains, os.cpu_count()) / steps
    row["min_ess"], row["min_ess_per_s"] = agreement_efficiency(res, timing["sample_s"])
    row["steps_per_draw"] = steps_total(res) / (chains * draws)
    # Chains stuck in the minor mode are sampled again (models/restart.py): how many, how long.
    row["restarted"] = len(fit.get("restarts", {}).get("restarted_chains", []))
    row["restart_s"] = timing.get("restart_s", 0.0)
    res.unlink(missing_ok=True)
    return row


def agreement_efficiency(results_file: Path, sample_s: float) -> tuple[float, float]:
    """Min bulk ESS over every reported E2 correlation and net-E1 share, and per second."""
    import arviz as az
    import xarray as xr

    low = []
    with xr.open_datatree(results_file, engine="netcdf4") as tree:
        for group in ("agreement", "net_e1"):
            ds = tree[group].to_dataset().load()
            for name in ds.data_vars:
                if {"chain", "draw"} <= set(ds[name].dims):
                    e = az.ess(ds[name], method="bulk", sample_dims=["chain", "draw"])
                    low.append(float(np.nanmin(np.asarray(e))))
    m = min(low) if low else float("nan")
    return m, m / sample_s


def scaling_rows(quick: bool, workdir: Path, sampler: str) -> list[dict]:
    rows = []
    for scale in ((0.1,) if quick else (0.1, 1.0, 10.0)):
        d = workdir / f"x{scale:g}"
        sim = measured(cli("simulate", "--preset", "reference", "--scale", str(scale),
                           "--no-truth", "--out", str(d)))
        if sim["rc"] != 0:
            rows.append({"benchmark": "scaling", "variant": f"{scale:g}x",
                         "error": sim["stderr"][-300:]})
            continue
        row = fit_row("scaling", f"{scale:g}x", [str(d / "ratings.parquet"), "--tasks",
                                                 str(d / "tasks.csv")], workdir, sampler)
        row["simulate_s"] = sim["wall_s"]
        rows.append(row)
    return rows


def student_rows(quick: bool, workdir: Path, sampler: str) -> list[dict]:
    preset = "small" if quick else "reference"
    rows = [fit_row("student", f"{preset} gaussian", ["--preset", preset, "--strict"], workdir,
                    sampler),
            fit_row("student", f"{preset} student", ["--preset", preset, "--strict",
                                                     "--likelihood", "student"], workdir,
                    sampler)]
    if "wall_s" in rows[0] and "wall_s" in rows[1]:
        rows[1]["ratio"] = rows[1]["wall_s"] / rows[0]["wall_s"]
        rows[1]["ratio_of"] = "wall time / gaussian's"
    if sampler == "nutpie":
        # The fused kernel (models/student_kernels.py) against the PyMC graph compiled by numba
        # on the small preset (at reference size the graph needs ≈ 80 min).
        pair = []
        for variant, switch in (("small student, fast path", "1"),
                                ("small student, PyMC graph", "0")):
            old = os.environ.get("MISALIGN_FAST_PATH")
            os.environ["MISALIGN_FAST_PATH"] = switch
            try:
                pair.append(fit_row("student", variant, ["--preset", "small", "--strict",
                                                         "--likelihood", "student"], workdir,
                                    sampler))
            finally:
                os.environ.pop("MISALIGN_FAST_PATH")
                if old is not None:
                    os.environ["MISALIGN_FAST_PATH"] = old
        if all("us_per_grad" in r for r in pair):
            pair[1]["ratio"] = pair[1]["us_per_grad"] / pair[0]["us_per_grad"]
            pair[1]["ratio_of"] = "µs per gradient / fast path's"
        rows += pair
    return rows


def design_rows(quick: bool, workdir: Path, sampler: str, skip: set[str]) -> list[dict]:
    """misalign vs naive PyMC vs bambi on the 34 k design, in this process, same data."""
    from competitors import bambi_fit, min_ess_rhat, naive_pymc, shares_from_sigmas

    from misalign.data import build_misalignment
    from misalign.data.simulate import PRESETS, scaled, simulate
    from misalign.inference import fit_e1
    from misalign.models.e1_priors import SIGMA_PRIORS

    cfg = scaled(PRESETS["reference"], (2 if quick else 10) / 330)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        data = build_misalignment(simulate(cfg, compute_truth=False).table())
        n = data.n_ratings
        draws = 200 if quick else 1000
        t0 = time.perf_counter()
        res = fit_e1(data, sampler=sampler, draws=draws, tune=draws, chains=4, seed=1,
                     progressbar=False)
        wall = time.perf_counter() - t0
    timing = res.model.fit_config["timing"]
    post = res.model.idata["posterior"].to_dataset()
    sig = [SIGMA_PRIORS[c] for c in res.model.spec.components]
    ess, rhat = min_ess_rhat(shares_from_sigmas(post, sig))
    ours = {"benchmark": "design", "variant": "misalign (marginalised)", "sampler": sampler,
            "n_ratings": n, "wall_s": wall, "compile_s": timing.get("compile_s"),
            "sample_s": timing["sample_s"], "min_ess": ess, "min_ess_per_s":
            ess / timing["sample_s"], "max_rhat": rhat, "divergences": int(
                res.model.idata["sample_stats"]["diverging"].sum())}
    rows = [ours]
    other_draws = 100 if quick else OTHER_DRAWS[0]
    for name, fn in (("naive PyMC (one latent per unit×task and unit)", naive_pymc),
                     ("bambi (same formula)", bambi_fit)):
        key = "naive" if name.startswith("naive") else "bambi"
        if key in skip:
            continue
        t0 = time.perf_counter()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                out = fn(data, draws=other_draws, tune=other_draws, chains=4)
        except Exception as exc:  # a competitor that fails is a result, not a crash
            rows.append({"benchmark": "design", "variant": name, "sampler": "pymc",
                         "n_ratings": n, "error": f"{type(exc).__name__}: {exc}"[:300]})
            continue
        ess, rhat = min_ess_rhat(shares_from_sigmas(out["posterior"], out["sigmas"]))
        row = {"benchmark": "design", "variant": name, "sampler": "pymc", "n_ratings": n,
               "wall_s": time.perf_counter() - t0, "sample_s": out["sample_s"], "min_ess": ess,
               "min_ess_per_s": ess / out["sample_s"], "max_rhat": rhat,
               "divergences": out["divergences"]}
        row["ratio"] = ours["min_ess_per_s"] / row["min_ess_per_s"]
        row["ratio_of"] = "misalign min-ESS/s ÷ this"
        rows.append(row)
    return rows


OTHER_DRAWS = [100]  # --other-draws: tune = draws for the naive and bambi fits

COLUMNS = ["benchmark", "variant", "sampler", "n_ratings", "wall_s", "fit_s", "compile_s",
           "sample_s", "us_per_grad", "min_ess", "min_ess_per_s", "max_rhat", "divergences",
           "peak_mb", "gate", "ratio", "ratio_of", "platform", "error"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="small sizes: a few minutes")
    ap.add_argument("--rows", default="reference,design,scaling,student",
                    help="comma-separated subset of reference,design,scaling,student,measure,"
                    "startup,lme4,gstudy,sensitivity")
    ap.add_argument("--sampler", default="nutpie", choices=["nutpie", "numpyro", "pymc"])
    ap.add_argument("--skip", default="", help="competitors to skip: naive,bambi")
    ap.add_argument("--out", default=str(HERE / "results"), help="folder for CSV/JSON")
    ap.add_argument("--timeout", type=float, default=600.0,
                    help="seconds before one CLI run is stopped (reported as timed out)")
    ap.add_argument("--other-draws", type=int, default=100,
                    help="tune and draws per chain for the naive PyMC and bambi fits")
    for opt in ("chains", "draws", "tune"):
        ap.add_argument(f"--{opt}", type=int, help="passed to misalign fit (default: its own)")
    args = ap.parse_args(argv)
    TIMEOUT[0], OTHER_DRAWS[0] = args.timeout, args.other_draws
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"bench-{args.sampler}{'-quick' if args.quick else ''}" + (
        f"-{args.chains}chains" if args.chains else "")
    partial = out / f"{stem}.partial.jsonl"  # one line per finished row: survives a kill
    partial.write_text("")
    for opt in ("chains", "draws", "tune"):
        if getattr(args, opt) is not None:
            EXTRA_FIT_ARGS.extend([f"--{opt}", str(getattr(args, opt))])
    rows: list[dict] = []
    done = 0
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for name in args.rows.split(","):
            t0 = time.perf_counter()
            if name == "reference":
                rows += reference_rows(args.quick, work, args.sampler)
            elif name == "design":
                rows += design_rows(args.quick, work, args.sampler, set(args.skip.split(",")))
            elif name == "scaling":
                rows += scaling_rows(args.quick, work, args.sampler)
            elif name == "student":
                rows += student_rows(args.quick, work, args.sampler)
            elif name in ("startup", "lme4", "gstudy", "sensitivity"):
                import startup

                fn = getattr(startup, f"{name}_rows")
                rows += fn(args.quick, work, TIMEOUT[0], EXTRA_FIT_ARGS)
            elif name == "measure":
                new = measure_rows(args.quick, work, args.sampler)
                base = [r for r in rows if r.get("benchmark") == "reference" and "wall_s" in r]
                if base and "wall_s" in new[0] and "error" not in new[0]:
                    new[0]["ratio"] = new[0]["wall_s"] / base[0]["wall_s"]
                    new[0]["ratio_of"] = "wall time / E1 reference row's"
                rows += new
            else:
                ap.error(f"unknown row group {name!r}")
            with partial.open("a") as fh:
                for r in rows[done:]:
                    fh.write(json.dumps(r, default=str) + "\n")
                    print("row:", json.dumps(r, default=str), file=sys.stderr, flush=True)
            done = len(rows)
            print(f"[{name}: {time.perf_counter() - t0:.0f} s]", file=sys.stderr, flush=True)
    table = pd.DataFrame(rows).reindex(columns=[c for c in COLUMNS if any(c in r for r in rows)])
    meta = {"date": datetime.now(UTC).isoformat(timespec="seconds"), "quick": args.quick,
            "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.node()}",
            "python": platform.python_version(), "sampler": args.sampler}
    table.to_csv(out / f"{stem}.csv", index=False)
    (out / f"{stem}.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2,
                                                 default=str))
    with pd.option_context("display.width", 250, "display.max_columns", 30,
                           "display.float_format", "{:.3g}".format):
        print(table.to_string(index=False))
    print(f"\n{meta}\nwritten: {out / stem}.csv, .json")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
