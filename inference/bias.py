"""The size of the drift: E1's overall bias, its bias per task in expert SDs and rubric points,
the total error SD, and every LLM's, prompt's and LLM × prompt's bias (intercept + effects), per
draw. Errors are LLM score − expert reference, so a positive bias means the LLM scores higher.

- ``overall_bias``: the intercept (the error scale's units: expert SDs, or rubric points on
  ``--error-scale raw``).
- ``task_bias``: intercept + task effect; ``task_bias_points``: the same times the task's scale
  (rubric points per expert SD, ``MisalignmentData.task_scale``; 1 on the raw scale). Rubric
  points exist per task only: tasks have their own scales.
- ``total_error_sd``: √ of the sum of the components' finite-population variances: the SD of
  one rating's error about the overall bias for the LLMs and prompts in these data (in the
  error scale's units), what the headline shares divide.
- ``llm_bias`` (family effect included), ``prompt_bias`` and ``llm_prompt_bias``
  (intercept + llm + family + prompt + llm × prompt): averaged over the tasks, as the effects are
  zero-sum over tasks.
- ``*_points`` (``overall_bias_points``, ``llm_bias_points``, …): the same biases in rubric
  points, the mean over tasks of each task's bias (with its task interactions) times that task's
  scale; on the raw scale they equal the plain ones.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr

from .summaries import interval_frame

BIAS_VARS = ("overall_bias", "task_bias", "task_bias_points", "total_error_sd", "llm_bias",
             "prompt_bias", "llm_prompt_bias", "overall_bias_points", "llm_bias_points",
             "prompt_bias_points", "llm_prompt_bias_points")
# Which effects enter each bias per task (before the mean over tasks, in rubric points).
_PER_TASK = {"llm_bias": ("llm_task_effect",), "prompt_bias": ("prompt_task_effect",),
             "llm_prompt_bias": ("llm_task_effect", "prompt_task_effect",
                                 "llm_prompt_task_effect")}
RANKED = {"llm_bias": "LLM", "prompt_bias": "prompt", "llm_prompt_bias": "LLM × prompt"}


def _llm_effect(model, post: xr.Dataset) -> xr.DataArray | None:
    llm = post["llm_effect"] if "llm_effect" in post else None
    if "family_effect" in post:
        fam = post["family_effect"].isel(family=xr.DataArray(model.spec.llm_family, dims="llm"))
        fam = fam.drop_vars("family").assign_coords(llm=model.spec.coords["llm"])
        llm = fam if llm is None else llm + fam
    return llm


def compute_bias(model, posterior: xr.Dataset, shares: xr.Dataset) -> xr.Dataset:
    """The bias group of an E1 results file (see the module's docstring)."""
    post = posterior
    b0 = post["intercept"]
    tasks = model.spec.coords["task"]
    task = b0 + (post["task_effect"] if "task_effect" in post else
                 xr.zeros_like(b0).expand_dims(task=tasks, axis=-1))
    task = task.assign_coords(task=tasks)
    scale = model.data.task_scale if model.data.error_scale == "expert-sd" else {}
    factor = xr.DataArray([float(scale.get(t, 1.0)) for t in tasks], dims="task",
                          coords={"task": tasks})
    out = {"overall_bias": b0, "task_bias": task, "task_bias_points": task * factor,
           "total_error_sd": np.sqrt(shares["finite_population_variance"].sum("component"))}
    llm = _llm_effect(model, post)
    if llm is not None:
        out["llm_bias"] = b0 + llm
    if "prompt_effect" in post:
        out["prompt_bias"] = b0 + post["prompt_effect"]
    if llm is not None or "prompt_effect" in post:
        pair = b0 + (llm if llm is not None else 0.0)
        if "prompt_effect" in post:
            pair = pair + post["prompt_effect"]
        if "llm_prompt_effect" in post:
            pair = pair + post["llm_prompt_effect"]
        if "llm" in pair.dims and "prompt" in pair.dims:
            out["llm_prompt_bias"] = pair.transpose("chain", "draw", "llm", "prompt")
    out["overall_bias_points"] = out["task_bias_points"].mean("task")
    for var, extra in _PER_TASK.items():
        if var in out:
            per_task = out[var] + task - b0
            for name in extra:
                if name in post:
                    per_task = per_task + post[name]
            out[f"{var}_points"] = (per_task.assign_coords(task=tasks) * factor).mean(
                "task").transpose(*out[var].dims)
    ds = xr.Dataset({k: v.drop_vars([c for c in v.coords if c not in v.dims])
                     for k, v in out.items()})
    ds.attrs["error_scale"] = model.data.error_scale
    return ds


def ranked_bias_table(bias: xr.Dataset) -> pd.DataFrame:
    """LLMs, prompts and LLM × prompt pairs, each group ranked by the size of its posterior mean
    bias (1 = closest to the experts)."""
    frames = []
    for var, what in RANKED.items():
        if var not in bias:
            continue
        f = interval_frame({"bias": bias[var], "points": bias[f"{var}_points"]})
        dims = [d for d in bias[var].dims if d not in ("chain", "draw")]
        level = f[dims].astype(str).agg(" × ".join, axis=1)
        f = pd.DataFrame({"effect": what, "level": level}).join(
            f[["bias_mean", "bias_lower", "bias_upper", "points_mean", "points_lower",
               "points_upper"]])
        f = f.iloc[np.argsort(np.abs(f["bias_mean"].to_numpy()), kind="stable")]
        f.insert(2, "rank", np.arange(1, len(f) + 1))
        f["excludes_0"] = (f["bias_lower"] > 0) | (f["bias_upper"] < 0)
        frames.append(f)
    cols = ["effect", "level", "rank", "bias_mean", "bias_lower", "bias_upper", "points_mean",
            "points_lower", "points_upper", "excludes_0"]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=cols)


def task_bias_table(bias: xr.Dataset) -> pd.DataFrame:
    """Per task: the bias in the error scale's units and in rubric points."""
    f = interval_frame({"bias": bias["task_bias"], "points": bias["task_bias_points"]})
    return f


def size_table(bias: xr.Dataset) -> pd.DataFrame:
    """The overall bias and the total error SD (one row each)."""
    rows = []
    for var, name in (("overall_bias", "overall bias"),
                      ("overall_bias_points", "overall bias (rubric points, mean over tasks)"),
                      ("total_error_sd", "total error SD")):
        f = interval_frame({"value": bias[var]})
        rows.append({"quantity": name} | f.iloc[0].to_dict())
    return pd.DataFrame(rows)
