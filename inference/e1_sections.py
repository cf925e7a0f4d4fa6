"""E1's report: the headline, which column to read, the share forest, and which way each LLM and
prompt leans. Functions of an ``E1Results`` (duck-typed: this module does not import it)."""

from __future__ import annotations

from typing import Any

import pandas as pd
import xarray as xr

from misalign.data.components import AGGREGATES
from misalign.models.spec import FEW_LEVELS

from .sections import FigureSpec, Number, Section, Sentence, TableSpec
from .summaries import interval_frame

UNITS = {"expert-sd": "expert SDs", "raw": "rubric points"}


def _number(table: pd.DataFrame, kind: str, name: str, column: str = "finite") -> Number | None:
    row = table[(table["kind"] == kind) & (table["name"] == name)]
    if row.empty:
        return None
    r = row.iloc[0]
    return Number(name, float(r[f"{column}_mean"]), float(r[f"{column}_lower"]),
                  float(r[f"{column}_upper"]))


def headline(res: Any) -> Sentence:
    """"Of the spread of LLM errors, 14% [13–16%] comes from which LLM and prompt you choose;
    …" from the finite-population aggregates."""
    t = res.table
    parts: Sentence = ["Of the spread of LLM errors, "]
    phrases = (("attributable", " comes from which LLM and prompt you choose; "),
               ("shared", " is shared by all LLMs (errors every LLM makes alike on a unit); "),
               ("task", " is how much harder some tasks are for every LLM; and "),
               ("residual", " is residual noise"))
    for name, words in phrases:
        n = _number(t, "aggregate", name)
        if n is not None:
            parts += [n, words]
    fam = _number(t, "aggregate", "family") if "family" in res.model.spec.components else None
    parts.append(". ")
    if fam is not None:
        parts += ["The LLMs' pretraining family alone accounts for ", fam, ". "]
    parts.append("(Finite-population shares of the LLMs and prompts in these data, "
                 "94% intervals.)")
    return parts


def which_column(res: Any) -> list[str]:
    coords = res.model.spec.coords
    names = {"llm": ("LLM", "LLMs"), "prompt": ("prompt", "prompts"),
             "family": ("family", "families")}
    few = [f"{len(coords[d])} {names[d][len(coords[d]) != 1]}" for d in names
           if d in coords and len(coords[d]) < FEW_LEVELS]
    lines = ["Which column to read: the finite-population share describes the LLMs and prompts "
             "in these data (the variance of their realised effects); the superpopulation "
             "share describes LLMs and prompts drawn anew from the same population (the σ's)."]
    if few:
        lines.append(f"With {', '.join(few)} the superpopulation share of those factors is "
                     "mostly prior: read the finite-population column.")
    return lines


def share_forest(res: Any) -> list[FigureSpec]:
    s = res.shares
    agg = xr.Dataset({"finite population": s["finite_population_aggregate"],
                      "superpopulation": s["superpopulation_aggregate"]})
    comp = xr.Dataset({"finite population": s["finite_population"],
                       "superpopulation": s["superpopulation"]})
    return [
        FigureSpec("forest", agg, caption=(
            "Aggregate shares of the misalignment error variance: posterior mean (dot) and "
            "94% HDI (line), finite-population and superpopulation."),
            alt="Forest plot of the attributable, shared, task, residual and family shares "
                "with their 94% intervals, finite-population above superpopulation."),
        FigureSpec("forest", comp, caption=(
            "Every component's share (the aggregates above are sums of these)."),
            alt="Forest plot of each variance component's share with its 94% interval.")]


def bias_effects(res: Any) -> xr.Dataset:
    """Draws of the overall bias and of each LLM's (family included), prompt's and
    LLM×prompt's deviation from it."""
    post = res.model.posterior
    out = {"overall bias": post["intercept"]}
    llm = post["llm_effect"] if "llm_effect" in post else None
    if "family_effect" in post:
        fam = post["family_effect"].isel(family=xr.DataArray(
            res.model.spec.llm_family, dims="llm")).drop_vars("family")
        fam = fam.assign_coords(llm=res.model.spec.coords["llm"])
        llm = fam if llm is None else llm + fam
    # Not named after a dimension ("prompt"): xarray would take the name for the coordinate.
    if llm is not None:
        out["LLM effect"] = llm
    if "prompt_effect" in post:
        out["prompt effect"] = post["prompt_effect"]
    if "llm_prompt_effect" in post:
        out["LLM × prompt effect"] = post["llm_prompt_effect"]
    return xr.Dataset(out)


def bias_table(effects: xr.Dataset) -> pd.DataFrame:
    frames = []
    for name, da in effects.data_vars.items():
        f = interval_frame({"bias": da})
        dims = [d for d in da.dims if d not in ("chain", "draw")]
        level = f[dims].astype(str).agg(" / ".join, axis=1) if dims else "all LLM ratings"
        frames.append(pd.DataFrame({"effect": name, "level": level}, index=f.index).join(
            f[["bias_mean", "bias_lower", "bias_upper"]]))
    return pd.concat(frames, ignore_index=True)


def bias_section(res: Any) -> Section:
    unit = UNITS.get(res.model.data.error_scale, "units")
    effects = bias_effects(res)
    table = bias_table(effects)
    overall = table.iloc[0]
    n = Number("overall_bias", float(overall["bias_mean"]), float(overall["bias_lower"]),
               float(overall["bias_upper"]), style="signed")
    side = "above" if n.mean > 0 else "below"
    text = [f"Errors are LLM score − expert reference, in {unit}: a positive bias means the LLM "
            "rates higher than the experts. Each LLM's, prompt's and LLM × prompt's effect is "
            "its deviation from the overall bias (they sum to zero)."]
    return Section(
        "e1-bias", "Which way each LLM and prompt leans",
        headline=["On average the LLMs score ", n, f" {unit} {side} the expert reference."],
        text=text,
        tables=[TableSpec("bias", f"bias ({unit}; posterior mean [94% HDI])", table,
                          labels=["effect", "level"], intervals={"bias": "bias"},
                          group_by="effect")],
        figures=[FigureSpec("forest", effects, caption=(
            f"The overall bias and each LLM's, prompt's and LLM × prompt's deviation from it "
            f"({unit}); posterior mean and 94% HDI."),
            alt="Forest plot of the overall bias and of the effect of every LLM, prompt and "
                "LLM-prompt pair, with 94% intervals.")])


def sections(res: Any) -> list[Section]:
    cfg = res.model.config
    table = TableSpec(
        key="shares",
        title=(f"E1 variance partition of misalignment error ({cfg['error_scale']} scale, "
               f"{cfg['likelihood']} likelihood)"),
        frame=res.table, labels=["name"], headers={"name": "component"},
        intervals={"finite-pop share [94% HDI]": "finite",
                   "superpop share [94% HDI]": "super"},
        group_by="kind", emphasis=("kind", "aggregate"),
        caption=("aggregates (bold) are sums of components: " + "; ".join(
            f"{a} = {' + '.join(m)}" for a, m in AGGREGATES.items() if a != "family")
            + "; family is also shown on its own, as part of attributable"))
    main = Section("e1", "How far LLM ratings drift from the experts (E1)",
                   headline=headline(res), text=which_column(res), tables=[table],
                   figures=share_forest(res))
    return [main, bias_section(res)]
