"""What a fit costs before sampling, and lme4 beside it (``--rows startup,lme4``).

``startup``: ``misalign fit`` in a fresh process on three occasions, for the small and the
reference preset, with the compiled fast path (models/kernels.py) and, as the baseline in the
same run, with the PyMC graph compiled by numba (``MISALIGN_FAST_PATH=0``):
- *after install*: empty numba and PyTensor caches (``NUMBA_CACHE_DIR``, ``PYTENSOR_FLAGS``
  pointed at fresh folders);
- *new data set*: the same caches, a data set simulated with another seed;
- *refit*: that data set again.

``lme4``: the REML point estimate of the same variance components through ``Rscript`` on the
same simulated data (0.01× and 0.1× the reference preset), beside misalign's full posterior on
that file; skipped with a note when R or lme4 is missing (Debian: r-base-core r-cran-lme4).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _run(cmd: list[str], env: dict, timeout: float) -> dict:
    t = time.perf_counter()
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                           env=os.environ | env)
        rc, so, se = p.returncode, p.stdout, p.stderr
    except subprocess.TimeoutExpired:
        rc, so, se = -9, "", f"timed out after {timeout:.0f} s"
    return {"rc": rc, "wall_s": time.perf_counter() - t, "stdout": so, "stderr": se[-2000:]}


def _simulate(preset: str, seed: int, out: Path, timeout: float, scale: float = 1.0) -> Path:
    if not (out / "ratings.parquet").exists():
        r = _run([sys.executable, "-m", "misalign.cli", "simulate", "--preset", preset,
                  "--seed", str(seed), "--scale", str(scale), "--no-truth", "--out", str(out)],
                 {}, timeout)
        if r["rc"] != 0:
            raise RuntimeError(r["stderr"][-300:])
    return out


def _fit(data: Path, env: dict, timeout: float, extra: list[str]) -> dict:
    res = data / "fit.nc"
    r = _run([sys.executable, "-m", "misalign.cli", "fit", str(data / "ratings.parquet"),
              "--tasks", str(data / "tasks.csv"), "--json", "--no-progress", "--strict",
              "--out", str(res), *extra], env, timeout)
    row = {"wall_s": r["wall_s"]}
    if r["rc"] not in (0, 3):
        row["error"] = (r["stderr"].strip().splitlines() or [str(r["rc"])])[-1][:300]
        return row
    payload = json.loads(r["stdout"])
    timing = payload["fit"].get("timing", {})
    row.update(n_ratings=payload["data"]["ratings"], compile_s=timing.get("compile_s"),
               sample_s=timing.get("sample_s"),
               gate="pass" if payload["gate"]["passed"] else "FAIL")
    res.unlink(missing_ok=True)
    return row


def startup_rows(quick: bool, workdir: Path, timeout: float, extra: list[str]) -> list[dict]:
    rows = []
    for preset in ("small",) if quick else ("small", "reference"):
        first = _simulate(preset, 101, workdir / f"{preset}-101", timeout)
        second = _simulate(preset, 102, workdir / f"{preset}-102", timeout)
        for path, env in (("fast path", {}), ("PyMC graph (numba)", {"MISALIGN_FAST_PATH": "0"})):
            caches = workdir / f"caches-{preset}-{len(rows)}"
            shutil.rmtree(caches, ignore_errors=True)
            env = env | {"NUMBA_CACHE_DIR": str(caches / "numba"),
                         "PYTENSOR_FLAGS": f"base_compiledir={caches / 'pytensor'}"}
            base = None
            for occasion, data in (("after install", first), ("new data set", second),
                                   ("refit", second)):
                row = {"benchmark": "startup", "variant": f"{preset}, {occasion}",
                       "sampler": path} | _fit(data, env, timeout, extra)
                if path == "fast path":
                    base = base or {}
                    base[occasion] = row.get("wall_s")
                rows.append(row)
                print("row:", json.dumps(row), file=sys.stderr, flush=True)
        fast = {r["variant"]: r["wall_s"] for r in rows
                if r["sampler"] == "fast path" and r["variant"].startswith(preset)}
        for r in rows:
            if r["sampler"] != "fast path" and r["variant"] in fast and "error" not in r:
                r["ratio"] = r["wall_s"] / fast[r["variant"]]
                r["ratio_of"] = "wall time ÷ the fast path's"
    return rows


def lme4_available() -> str | None:
    """None when Rscript with lme4 runs; else why not."""
    if shutil.which("Rscript") is None:
        return "Rscript not found (Debian: apt-get install r-base-core r-cran-lme4)"
    r = subprocess.run(["Rscript", "-e", "suppressMessages(library(lme4))"],
                       capture_output=True, text=True)
    return None if r.returncode == 0 else "R has no lme4 (Debian: r-cran-lme4)"


def _lme4_csv(data: Path) -> Path:
    """The ratings misalign fits (errors on the expert-SD scale) with lme4's grouping columns."""
    import pandas as pd

    from misalign.data import build_misalignment, load_ratings

    table = load_ratings(data / "ratings.parquet", tasks=data / "tasks.csv")
    f = build_misalignment(table).frame
    s = {c: f[c].astype(str) for c in ("llm", "family", "prompt", "task")}
    unit = f["unit_id"].astype(str)
    cols = {
        **s, "llm_prompt": s["llm"] + "|" + s["prompt"], "llm_task": s["llm"] + "|" + s["task"],
        "prompt_task": s["prompt"] + "|" + s["task"],
        "llm_prompt_task": s["llm"] + "|" + s["prompt"] + "|" + s["task"],
        "unit_task": unit + "|" + s["task"], "unit": unit,
        "transcript": f["transcript_id"].astype(str), "teacher": f["teacher_id"].astype(str),
        "lineage": s["family"] + "|" + unit + "|" + s["task"],
        "llm_unit_task": s["llm"] + "|" + unit + "|" + s["task"]}
    out = data / "lme4.csv"
    order = ["llm", "family", "prompt", "task", "llm_prompt", "llm_task", "prompt_task",
             "llm_prompt_task", "unit_task", "unit", "transcript", "teacher", "lineage",
             "llm_unit_task"]
    frame = pd.DataFrame({k: cols[k] for k in order})
    frame["error"] = f["error"].to_numpy()
    frame.to_csv(out, index=False)
    return out


def lme4_rows(quick: bool, workdir: Path, timeout: float, extra: list[str]) -> list[dict]:
    why = lme4_available()
    if why:
        return [{"benchmark": "lme4", "variant": "skipped", "error": why}]
    rows = []
    # lme4 at 0.1× the reference preset (110,880 ratings, 14 random terms) ran 11 min on this
    # machine; at 1× (1.1 M) it is stopped at the timeout, and the ratio is a lower bound.
    for scale in (0.01,) if quick else (0.01, 0.1, 1.0):
        data = _simulate("reference", 103, workdir / f"lme4-{scale:g}", timeout, scale)
        ours = {"benchmark": "lme4", "variant": f"{scale:g}x reference: misalign (posterior)",
                "sampler": "fast path"} | _fit(data, {}, timeout, extra)
        csv = _lme4_csv(data)
        r = _run(["Rscript", str(HERE / "lme4_fit.R"), str(csv)], {}, timeout)
        row = {"benchmark": "lme4", "variant": f"{scale:g}x reference: lme4 REML (point)",
               "sampler": "lme4", "wall_s": r["wall_s"], "n_ratings": ours.get("n_ratings")}
        if r["rc"] == -9 and "wall_s" in ours and "error" not in ours:
            row["error"] = f"stopped at the timeout ({timeout:.0f} s)"
            row["ratio"] = timeout / ours["wall_s"]
            row["ratio_of"] = "at least: the timeout ÷ misalign's wall time"
        elif r["rc"] != 0:
            row["error"] = (r["stderr"].strip().splitlines() or [str(r["rc"])])[-1][:300]
        else:
            out = json.loads(r["stdout"].strip().splitlines()[-1])
            row["sample_s"] = out["fit_s"]  # lme4's own fitting time, reading excluded
            if "wall_s" in ours and "error" not in ours:
                row["ratio"] = row["wall_s"] / ours["wall_s"]
                row["ratio_of"] = "lme4's wall time ÷ misalign's"
        rows += [ours, row]
        for x in (ours, row):
            print("row:", json.dumps(x), file=sys.stderr, flush=True)
    return rows


NCTE = HERE.parent.parent / "shared" / "data" / "ncte_class" / "class_ratings.csv"


def gstudy_rows(quick: bool, workdir: Path, timeout: float, extra: list[str]) -> list[dict]:
    """The G-study on the NCTE CLASS file (12 dimensions): fast path and PyMC graph."""
    if not NCTE.exists():
        return [{"benchmark": "gstudy", "variant": "skipped", "error": f"no {NCTE}"}]
    rows = []
    for path, env in (("fast path", {}), ("PyMC graph (numba)", {"MISALIGN_FAST_PATH": "0"})):
        res = workdir / "gstudy.nc"
        r = _run([sys.executable, "-m", "misalign.cli", "gstudy", str(NCTE), "--format",
                  "ncte-class", "--json", "--no-progress", "--strict", "--out", str(res),
                  *extra], env, timeout)
        row = {"benchmark": "gstudy", "variant": "NCTE CLASS, 12 dimensions", "sampler": path,
               "wall_s": r["wall_s"]}
        if r["rc"] not in (0, 3):
            row["error"] = (r["stderr"].strip().splitlines() or [str(r["rc"])])[-1][:300]
        else:
            payload = json.loads(r["stdout"])
            timing = payload["fit"].get("timing", {})
            row.update(compile_s=timing.get("compile_s"), sample_s=timing.get("sample_s"),
                       gate="pass" if payload["gate"]["passed"] else "FAIL",
                       n_ratings=sum(payload["data"]["ratings"].values())
                       if isinstance(payload["data"].get("ratings"), dict)
                       else payload["data"].get("ratings"))
        rows.append(row)
        print("row:", json.dumps(row), file=sys.stderr, flush=True)
    if all("error" not in r for r in rows):
        rows[1]["ratio"] = rows[1]["wall_s"] / rows[0]["wall_s"]
        rows[1]["ratio_of"] = "wall time ÷ the fast path's"
    return rows


def sensitivity_rows(quick: bool, workdir: Path, timeout: float, extra: list[str]
                     ) -> list[dict]:
    """``misalign sensitivity`` (power-scaling and the refit sweep, 2 workers) on a fit of
    the reference preset (small with --quick)."""
    preset = "small" if quick else "reference"
    data = _simulate(preset, 104, workdir / f"sens-{preset}", timeout)
    res = data / "e1.nc"
    fit = _run([sys.executable, "-m", "misalign.cli", "fit", str(data / "ratings.parquet"),
                "--tasks", str(data / "tasks.csv"), "--no-progress", "--out", str(res),
                *extra], {}, timeout)
    row = {"benchmark": "sensitivity", "variant": f"{preset}: power-scaling + refits, 2 workers",
           "sampler": "fast path", "fit_s": fit["wall_s"]}
    if fit["rc"] not in (0, 3):
        return [row | {"error": fit["stderr"][-300:]}]
    r = _run([sys.executable, "-m", "misalign.cli", "sensitivity", str(res), "--workers", "2",
              "--no-progress", "--out", str(workdir / "sens-out"), *extra], {}, timeout)
    row["wall_s"] = r["wall_s"]
    if r["rc"] != 0:
        row["error"] = (r["stderr"].strip().splitlines() or [str(r["rc"])])[-1][:300]
    print("row:", json.dumps(row), file=sys.stderr, flush=True)
    return [row]
