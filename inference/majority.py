"""E4's majority vote of the sources' rounded ratings, by posterior predictive replication
(MEASUREMENT.md, E4: a vote is not linear, so its moments have no closed form).

For a thinned set of posterior draws, per task: a population of teachers in the data's design
(lessons × segments, as ``MeasurementData.design``) is drawn from the model (quality and the
shared deviation at teacher, lesson and cell; each LLM's own cell error and its family's
lineage; each source's intercept, loading and noise), every source's rating is put back on the
rubric and rounded to its nearest point (clipped to the points the data use), and the cell's
vote is ``data.ensembles.majority``. Its correlations with a single expert rating, with true
quality and, at teacher level, with value-added follow from the replicated population.

Rounding is applied to a rating whose noise is the model's minus a point's rounding variance
(Sheppard's correction, h²/12 on the rubric): the model's noise was fitted to rounded ratings
and already holds that variance once. Tasks whose LLM scores are not whole rubric points (or
have more than ``MAX_POINTS`` of them) get no vote.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr

from misalign.data.ensembles import majority

from .agreement import LEVELS, _parts, _sub

MAX_POINTS = 15
N_DRAWS = 240  # posterior draws replicated (evenly spread over each chain)
N_TEACHERS = 1500  # teachers per replicated population (Monte Carlo SD of a correlation ≈ 0.02)


def rubric_points(model: Any) -> dict[str, np.ndarray]:
    """Per task whose LLM scores are whole points: the points the data use (lowest to
    highest, every whole point between)."""
    f = model.data.frame
    llm = f[f["kind"] == "llm"]
    out = {}
    for task, g in llm.groupby("task", observed=True):
        s = g["score"].to_numpy(float)
        if len(s) and np.allclose(s, np.round(s)) and s.max() - s.min() + 1 <= MAX_POINTS:
            out[str(task)] = np.arange(s.min(), s.max() + 1)
    return out


def _thin(post: xr.Dataset, n: int) -> xr.Dataset:
    per_chain = max(1, int(np.ceil(n / post.sizes["chain"])))
    idx = np.unique(np.linspace(0, post.sizes["draw"] - 1, per_chain).round().astype(int))
    return post.isel(draw=idx)


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a - a.mean(), b - b.mean()
    return float((a @ b) / np.sqrt((a @ a) * (b @ b)))


def _replicate(par: dict, design: tuple[int, int], points: np.ndarray, centre: float,
               scale: float, groups: tuple[np.ndarray, np.ndarray], rng: np.random.Generator
               ) -> dict[str, float]:
    """One draw, one task: the vote's correlations in a replicated population."""
    n, m = design
    T = N_TEACHERS
    C = T * n * m
    lesson_of = np.repeat(np.arange(T * n), m)
    teacher_of = lesson_of // n

    def latent(kind: str) -> tuple[np.ndarray, ...]:
        t = rng.normal(0, np.sqrt(par[f"{kind}_teacher"]), T)
        lsn = rng.normal(0, np.sqrt(par[f"{kind}_lesson"]), T * n)
        c = rng.normal(0, np.sqrt(par[f"{kind}_cell"]), C)
        return t, t[teacher_of] + lsn[lesson_of] + c, t[np.arange(T * n) // n] + lsn

    q_t, theta, q_lesson = latent("quality")
    s_t, phi, _ = latent("shared")
    source_llm, source_family = groups
    own = rng.normal(0, np.sqrt(par["llm_cell"]), (C, source_llm.max() + 1))[:, source_llm]
    lineage = rng.normal(0, np.sqrt(par["lineage"]), (C, source_family.max() + 1))[
        :, source_family]
    step = 1.0 / scale  # one rubric point on the expert-SD scale
    noise_sd = np.sqrt(np.maximum(par["noise"] - step**2 / 12.0, 0.0))
    y = (par["mu"] + par["lam"] * theta[:, None] + phi[:, None] + own + lineage
         + rng.normal(0, 1, (C, len(noise_sd))) * noise_sd)
    raw = np.clip(np.round(centre + scale * y), points[0], points[-1])
    vote = majority(raw, points)
    severity = par["severity"][rng.integers(0, len(par["severity"]), C)]
    expert = theta + severity + rng.normal(0, np.sqrt(par["expert"]), C)
    out = {"cell:expert": _corr(vote, expert), "cell:quality": _corr(vote, theta)}
    for level, of, size, true in (("lesson", lesson_of, T * n, q_lesson),
                                  ("teacher", teacher_of, T, q_t)):
        v = np.bincount(of, vote, size)
        e = np.bincount(of, expert, size)
        out[f"{level}:expert"] = _corr(v, e)
        out[f"{level}:quality"] = _corr(v, true)
        if level == "teacher" and "va_rho_quality" in par:
            rq, rs = par["va_rho_quality"], par["va_rho_shared"]
            z_q = q_t / np.sqrt(par["quality_teacher"])
            z_s = s_t / np.sqrt(par["shared_teacher"]) if par["shared_teacher"] > 0 else 0 * s_t
            va = rq * z_q + rs * z_s + np.sqrt(max(1 - rq**2 - rs**2, 0.0)) * rng.normal(0, 1, T)
            out["va"] = _corr(v / (n * m), va)
            out["va_misalignment"] = _corr(v / (n * m) - e / (n * m), va)
    return out


def majority_vote(model: Any, design: Any = None, seed: int = 0) -> xr.Dataset | None:
    """Per thinned draw and task: the vote's correlation with a single expert and with true
    quality at every level (``corr_expert``, ``corr_quality``: dims task, level) and, with
    value-added, its teacher score's and misalignment's (``corr_va``,
    ``corr_va_misalignment``), in the data's ``design`` or a stated one; None when no task
    has whole-point LLM scores."""
    points = rubric_points(model)
    if not points:
        return None
    post = _thin(model.posterior, N_DRAWS)
    p = {k: v.values for k, v in _parts(post).items()}
    p["llm_cell"] = _sub(post, "llm_cell").values
    p["lineage"] = _sub(post, "lineage").values
    p["mu"] = post["mu_source"].values
    has_va = "va_sd" in post
    if has_va:
        for name in ("va_rho_quality", "va_rho_shared"):
            p[name] = post[name].values
    severity = (post["rater_effect"].values if "rater_effect" in post
                else np.zeros(post["sigma_expert"].shape + (1,)))
    design = model.data.design() if design is None else design
    rng = np.random.default_rng(seed)
    groups = (np.asarray(model.source_llm), np.asarray(model.source_family))
    tasks = [t for t in model.data.tasks if t in points]
    keys = [f"{lv}:{k}" for lv in LEVELS for k in ("expert", "quality")]
    keys += ["va", "va_misalignment"] if has_va else []
    C, D = post.sizes["chain"], post.sizes["draw"]
    out = np.full((len(keys), C, D, len(tasks)), np.nan)
    index = {t: i for i, t in enumerate(model.data.tasks)}
    for j, task in enumerate(tasks):
        k = index[task]
        n, m = (max(1, int(round(design.loc[task, c]))) for c in ("n", "m"))
        for c in range(C):
            for d in range(D):
                par = {name: v[c, d, k] for name, v in p.items() if name != "severity"}
                par["severity"] = severity[c, d, k]
                got = _replicate(par, (n, m), points[task], model.data.task_centre[task],
                                 model.data.task_scale[task], groups, rng)
                for i, key in enumerate(keys):
                    out[i, c, d, j] = got[key]
    coords = {"chain": post["chain"].values, "draw": post["draw"].values, "task": tasks}
    ds = xr.Dataset(coords=coords)
    for i, key in enumerate(keys):
        ds[key] = (("chain", "draw", "task"), out[i])
    res = xr.Dataset({
        name: xr.concat([ds[f"{lv}:{name}"] for lv in LEVELS], dim="level").assign_coords(
            level=list(LEVELS)) for name in ("expert", "quality")}).rename(
        expert="corr_expert", quality="corr_quality")
    if has_va:
        res["corr_va"] = ds["va"]
        res["corr_va_misalignment"] = ds["va_misalignment"]
    res.attrs.update(draws=int(C * D), teachers_per_draw=N_TEACHERS,
                     definition="majority vote of every source's rounded rating of a cell "
                                "(ties: the mean of the tied points), by posterior predictive "
                                "replication")
    return res
