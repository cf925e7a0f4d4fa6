"""E5 with the joint measurement model beside E1 (``misalign dstudy E1 --measure M``): the
floor split into the experts' own error and what all LLMs truly share, and the expected
correlation of an average over k of the data's LLMs × q of its prompts with true quality and
with value-added (finite population: the mean over subsets of the ensemble formula,
``ensembles.py``).
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import xarray as xr

from misalign.data.ensembles import MAX_SUBSETS, design_weights

from .ensembles import ensembles
from .sections import Section, TableSpec
from .summaries import interval_frame


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


def joint_correlations(meas: Any) -> pd.DataFrame:
    """Per task and design (k of the data's LLMs × q of its prompts): a cell's average
    rating's correlation with true quality, and (with value-added) the teacher score's with
    value-added, averaged over subsets per draw; posterior mean and 94% HDI."""
    model = meas.model
    c = model.coords
    designs = design_weights([c["llm"][i] for i in model.source_llm],
                             [c["prompt"][i] for i in model.source_prompt])
    frames = []
    for (k, q), w in designs.items():
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

