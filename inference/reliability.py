"""Decision study and noise ceiling from G-study variance components (per posterior draw).

Notation: τ = teacher variance plus any facet above the teacher (school, district: stable
between-teacher differences, part of what a teacher-level score measures); σ²_l lesson within
teacher; σ²_R rater main effect; σ²_e residual (segment within lesson, confounded with rater ×
segment interactions and error, since nearly every segment has one rater).

Decision study: a teacher's score is the mean over n lessons × m segments, each segment scored
by the same r raters, and the same r raters score every teacher (raters crossed with teachers):
  relative error   δ = σ²_l / n + σ²_e / (n m r)
  absolute error   Δ = δ + σ²_R / r
  generalizability Eρ² = τ / (τ + δ),  dependability Φ = τ / (τ + Δ).
Extra raters on the same segments are assumed to average away all of σ²_e; the part of σ²_e
that is real segment-to-segment variation would not average away, so values at r > 1 are upper
bounds (the data cannot split σ²_e further).

Noise ceiling: the expert reference at a level is the mean of k raters' scores (the raters
differ between lessons, as in NCTE, so the rater effect is noise). Its reliability ρ is the
share of true-score variance in the reference; the correlation of any rater (LLM or human)
with the reference cannot exceed √ρ on average, and r / √ρ is the correlation disattenuated
for the reference's unreliability:
  segment:  ρ = (τ + σ²_l) / (τ + σ²_l + (σ²_R + σ²_e) / k)
  lesson:   ρ = (τ + σ²_l) / (τ + σ²_l + σ²_R / k + σ²_e / (m k))
  teacher:  ρ = τ / (τ + σ²_l / n + σ²_R / (n k) + σ²_e / (n m k))
(segment level: σ²_e is counted as error, so this is a lower bound on the segment reliability.)
"""

from __future__ import annotations

import itertools

import numpy as np
import xarray as xr

LEVELS = ("segment", "lesson", "teacher")
GRID = {"n_lessons": (1, 2, 3, 4, 5, 6, 8, 10, 12, 16, 20, 30), "n_segments": (1, 2, 3, 4, 6, 8),
        "n_raters": (1, 2, 3, 4, 6, 8, 12)}


def _parts(var: xr.DataArray) -> tuple[xr.DataArray, ...]:
    comp = list(var["component"].values)
    tau = sum(var.sel(component=c) for c in comp if c in ("teacher", "school", "district"))
    return (tau, var.sel(component="lesson"), var.sel(component="rater"),
            var.sel(component="residual"))


def coefficients(var: xr.DataArray, n_lessons: int, n_segments: int, n_raters: int
                 ) -> tuple[xr.DataArray, xr.DataArray]:
    """(Eρ², Φ) draws for one design; ``var`` has a ``component`` dim."""
    tau, lesson, rater, resid = _parts(var)
    delta = lesson / n_lessons + resid / (n_lessons * n_segments * n_raters)
    return tau / (tau + delta), tau / (tau + delta + rater / n_raters)


def decision_study(var: xr.DataArray, grid: dict | None = None) -> xr.Dataset:
    """Eρ² and Φ for every design in the grid: dims (…, n_lessons, n_segments, n_raters)."""
    grid = grid or GRID
    rel, dep = [], []
    combos = list(itertools.product(*grid.values()))
    for n, m, r in combos:
        a, b = coefficients(var, n, m, r)
        rel.append(a)
        dep.append(b)
    idx = {"design": np.arange(len(combos))}
    out = xr.Dataset({"generalizability": xr.concat(rel, dim="design"),
                      "dependability": xr.concat(dep, dim="design")}).assign_coords(idx)
    for i, name in enumerate(grid):
        out = out.assign_coords({name: ("design", [c[i] for c in combos])})
    return out.set_index(design=list(grid)).unstack("design")


def smallest_design(mean_coef: xr.DataArray, target: float = 0.8) -> dict | None:
    """The design with the fewest ratings per teacher (n·m·r; ties: fewer raters, then fewer
    lessons) whose posterior mean coefficient reaches ``target``; None if none does."""
    best = None
    for n in mean_coef["n_lessons"].values:
        for m in mean_coef["n_segments"].values:
            for r in mean_coef["n_raters"].values:
                v = float(mean_coef.sel(n_lessons=n, n_segments=m, n_raters=r))
                if v >= target:
                    key = (n * m * r, r, n)
                    if best is None or key < best[0]:
                        best = (key, {"n_lessons": int(n), "n_segments": int(m),
                                      "n_raters": int(r), "ratings": int(n * m * r),
                                      "value": v})
    return best[1] if best else None


def reliability(var: xr.DataArray, level: str, n_raters: int = 1, n_segments: int = 4,
                n_lessons: int = 4) -> xr.DataArray:
    """Reliability of the expert reference (mean of ``n_raters`` raters) at ``level``."""
    if level not in LEVELS:
        raise ValueError(f"level must be one of {LEVELS}, not {level!r}")
    tau, lesson, rater, resid = _parts(var)
    k, m, n = n_raters, n_segments, n_lessons
    if level == "segment":
        return (tau + lesson) / (tau + lesson + (rater + resid) / k)
    if level == "lesson":
        return (tau + lesson) / (tau + lesson + rater / k + resid / (m * k))
    return tau / (tau + lesson / n + rater / (n * k) + resid / (n * m * k))


def noise_ceiling(var: xr.DataArray, level: str, n_raters: int = 1, n_segments: int = 4,
                  n_lessons: int = 4) -> xr.DataArray:
    """Expected upper bound of the correlation between any rater and the expert reference."""
    return np.sqrt(reliability(var, level, n_raters, n_segments, n_lessons))


def disattenuate(r, ceiling):
    """An observed correlation with the reference, corrected for the reference's noise."""
    return r / ceiling
