"""E5 with the joint measurement model beside E1 (``misalign dstudy E1 --measure M``): the
floor split into the experts' own error and what all LLMs truly share, and the expected
correlation of an average over k of the data's LLMs × q of its prompts with true quality and
with value-added (finite population: the mean over subsets of the ensemble formula,
``ensembles.py``).
"""

from __future__ import annotations

from itertools import combinations, product
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from .ensembles import ensembles
from .sections import Section, TableSpec
from .summaries import interval_frame

MAX_SUBSETS = 12  # subsets of LLMs × prompts averaged per design (evenly spread when more)


def floor_split(meas: Any) -> pd.DataFrame:
    """Of the floor's parts the joint model also sees (over all tasks, per draw): the experts'
    severity and noise, what every LLM shares (compression + shared deviation) and lineage,
    each as a share of their sum."""
    v = meas.net["variance_all_tasks"]
    parts = {"experts' own error": v.sel(component="reference", drop=True),
             "shared by all LLMs": v.sel(component="compression", drop=True)
             + v.sel(component="shared_deviation", drop=True),
             "lineage": v.sel(component="lineage", drop=True)}
    total = sum(parts.values())
    frame = interval_frame({"share": xr.concat([p / total for p in parts.values()],
                                               dim=pd.Index(list(parts), name="part"))})
    return frame


def _subsets(llms: list[str], prompts: list[str], k: int, q: int) -> list[tuple]:
    all_ = list(product(combinations(llms, k), combinations(prompts, q)))
    if len(all_) <= MAX_SUBSETS:
        return all_
    pick = np.linspace(0, len(all_) - 1, MAX_SUBSETS).round().astype(int)
    return [all_[i] for i in pick]


def joint_correlations(meas: Any) -> pd.DataFrame:
    """Per task and design (k of the data's LLMs × q of its prompts): a cell's average
    rating's correlation with true quality, and (with value-added) the teacher score's with
    value-added, averaged over subsets per draw; posterior mean and 94% HDI."""
    model = meas.model
    c = model.coords
    src_llm = np.array([c["llm"][i] for i in model.source_llm])
    src_prompt = np.array([c["prompt"][i] for i in model.source_prompt])
    frames = []
    for k in range(1, len(c["llm"]) + 1):
        for q in range(1, len(c["prompt"]) + 1):
            rows = []
            for llms, prompts in _subsets(c["llm"], c["prompt"], k, q):
                mask = np.isin(src_llm, llms) & np.isin(src_prompt, prompts)
                rows.append(mask / mask.sum())
            w = pd.DataFrame(rows, index=[f"s{i}" for i in range(len(rows))])
            ens = ensembles(model.posterior, model.data.design(), w, model.source_llm,
                            model.source_family).mean("ensemble")
            parts = {"quality": ens["corr_quality"].sel(level="cell", drop=True)}
            if "corr_va" in ens:
                parts["va"] = ens["corr_va"]
            t = interval_frame(parts)
            t.insert(0, "prompts", q)
            t.insert(0, "llms", k)
            frames.append(t)
    return pd.concat(frames, ignore_index=True).sort_values(["task", "llms", "prompts"],
                                                           kind="stable").reset_index(drop=True)


def joint_sections(meas: Any) -> list[Section]:
    split = TableSpec(
        key="floor_split", title="What the floor is made of (joint model, all tasks)",
        frame=floor_split(meas), labels=["part"], intervals={"share [94% HDI]": "share"},
        caption=("E1's floor counts the experts' own severity and noise as error shared by "
                 "all LLMs; the joint model separates them (docs/measurement.md)."))
    corr = joint_correlations(meas)
    intervals = {"with true quality (cell)": "quality"}
    if "va_mean" in corr:
        intervals["with value-added (teacher)"] = "va"
    table = TableSpec(
        key="design_correlations",
        title="Expected correlation of an average of k of the data's LLMs × q prompts",
        frame=corr, labels=["task", "llms", "prompts"], intervals=intervals, group_by="task",
        caption=("finite population: the mean over subsets of the data's LLMs and prompts "
                 f"(up to {MAX_SUBSETS} per design) of the ensemble's correlation, per draw."))
    return [Section("dstudy_joint", "The floor and the correlations (joint model)",
                    tables=[split, table])]

