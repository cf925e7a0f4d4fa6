"""E1's report: the headline, which column to read, the share forest, and which way each LLM and
prompt leans. Functions of an ``E1Results`` (duck-typed: this module does not import it)."""

from __future__ import annotations

from typing import Any

import pandas as pd
import xarray as xr

from .bias import ranked_bias_table, size_table, task_bias_table
from .prior_overlap import MOSTLY_PRIOR
from .sections import FigureSpec, Number, Section, Sentence, TableSpec

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
    phrases = (("attributable", " comes from which LLM and prompt you choose"),
               ("shared", " is shared by all LLMs (errors every LLM makes alike on a unit)"),
               ("lineage", " is shared within a pretraining family beyond that"),
               ("reference", " is the severity of the experts behind the reference"),
               ("task", " is how much harder some tasks are for every LLM"),
               ("residual", " is residual noise"))
    found = [(n, words) for name, words in phrases
             if (n := _number(t, "aggregate", name)) is not None]
    for i, (n, words) in enumerate(found):
        if i:
            parts.append("; and " if i == len(found) - 1 else "; ")
        parts += [n, words]
    fam = _number(t, "aggregate", "family") if "family" in res.model.spec.components else None
    parts.append(". ")
    if fam is not None:
        parts += ["The LLMs' pretraining family alone accounts for ", fam, ". "]
    parts.append("(Finite-population shares of the LLMs and prompts in these data, "
                 "94% intervals.)")
    return parts


def which_column(res: Any) -> list[str]:
    lines = ["Which column to read: the finite-population share describes the LLMs and prompts "
             "in these data (the variance of their realised effects); the superpopulation "
             "share describes LLMs and prompts drawn anew from the same population (the σ's)."]
    t = res.table
    if "mostly_prior" in t:
        flagged = t[(t["kind"] == "aggregate") & t["mostly_prior"].astype(bool)]["name"].tolist()
        if flagged:
            lines.append(f"The superpopulation share of {', '.join(flagged)} is mostly prior "
                         f"(its posterior overlaps its prior by more than {MOSTLY_PRIOR}): read "
                         "the finite-population column.")
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


def bias_section(res: Any) -> Section:
    """The size of the drift: overall bias and total error SD in the headline, the bias per task
    (also in rubric points), and every LLM, prompt and LLM × prompt ranked by its bias."""
    unit = UNITS.get(res.model.data.error_scale, "units")
    b = res.bias
    size = size_table(b).set_index("quantity")
    bias_n, sd_n = (Number(key, float(size.loc[q, "value_mean"]),
                           float(size.loc[q, "value_lower"]), float(size.loc[q, "value_upper"]),
                           style=style)
                    for key, q, style in (("overall_bias", "overall bias", "signed"),
                                          ("total_error_sd", "total error SD", "decimal")))
    side = "above" if bias_n.mean > 0 else "below"
    text = [f"Errors are LLM score − expert reference, in {unit}: a positive bias means the LLM "
            "rates higher than the experts. The total error SD is the spread of one rating's "
            "error around the overall bias for the LLMs and prompts in these data (the square "
            "root of the sum of every component's finite-population variance). An LLM's bias "
            "is the overall bias plus its own effect (family included), averaged over tasks; "
            "a prompt's and an LLM × prompt pair's likewise. "
            "Rank 1 is the closest to the experts on average; \"excludes 0\": the 94% HDI "
            "does not contain 0."]
    tables = [TableSpec(
        "task_bias", f"bias per task ({unit} and rubric points; posterior mean [94% HDI])",
        task_bias_table(b), labels=["task"],
        intervals={f"bias ({unit})": "bias", "bias (rubric points)": "points"})]
    ranked = ranked_bias_table(b)
    if len(ranked):
        tables.append(TableSpec(
            "bias", f"bias of each LLM, prompt and LLM × prompt ({unit}; posterior mean [94% "
            "HDI]), ranked by size", ranked, labels=["effect", "level"],
            intervals={f"bias ({unit})": "bias", "rubric points": "points"},
            values={"rank": "rank", "excludes 0": "excludes_0"},
            group_by="effect"))
    forest = xr.Dataset({"overall bias": b["overall_bias"]} | {
        name: b[var] for var, name in (("llm_bias", "LLM bias"), ("prompt_bias", "prompt bias"),
                                       ("llm_prompt_bias", "LLM × prompt bias")) if var in b})
    return Section(
        "e1-bias", "How large the drift is, and which way each LLM and prompt leans",
        headline=["On average the LLMs score ", bias_n, f" {unit} {side} the expert reference; "
                  "the total error SD is ", sd_n, f" {unit}."],
        text=text, tables=tables,
        figures=[FigureSpec("forest", forest, caption=(
            f"The overall bias and the bias of every LLM, prompt and LLM × prompt pair "
            f"({unit}); posterior mean and 94% HDI."),
            alt="Forest plot of the overall bias and of the bias of every LLM, prompt and "
                "LLM-prompt pair, with 94% intervals.")])


def sections(res: Any) -> list[Section]:
    cfg = res.model.config
    aggs = res.model.aggregates()
    table = TableSpec(
        key="shares",
        title=(f"E1 variance partition of misalignment error ({cfg['error_scale']} scale, "
               f"{cfg['likelihood']} likelihood)"),
        frame=res.table, labels=["name"], headers={"name": "component"},
        intervals={"finite-pop share [94% HDI]": "finite",
                   "superpop share [94% HDI]": "super"},
        values={"prior overlap": "super_prior_overlap", "note": "note"}
        if "note" in res.table else {},
        group_by="kind", emphasis=("kind", "aggregate"),
        caption=("aggregates (bold) are sums of components: " + "; ".join(
            f"{a} = {' + '.join(m)}" for a, m in aggs.items() if a != "family")
            + ("; family is also shown on its own, as part of attributable (not one more part "
               "of the total)" if "family" in aggs else "")
            + ". Prior overlap: how much the superpopulation share's posterior "
            f"overlaps its prior (above {MOSTLY_PRIOR} the superpopulation column is mostly "
            "prior: read the finite-population one)."))
    main = Section("e1", "How far LLM ratings drift from the experts (E1)",
                   headline=headline(res), text=which_column(res), tables=[table],
                   figures=share_forest(res))
    return [main, bias_section(res), decision_section(res)]


def decision_section(res: Any) -> Section:
    """E5: how the error falls with more LLMs and prompts, and the floor it cannot pass."""
    t = res.decision_table
    cfg = res.model.config
    text = []
    for kind, words in (("superpopulation", "new LLMs and prompts"),
                        ("finite_population", "the data's own LLMs and prompts")):
        best = t.attrs["smallest"][kind]
        text.append(f"Averaging {words}: " + (
            f"{best[0]} LLM(s) × {best[1]} prompt(s) come within 5% of the floor."
            if best else "no design in the grid comes within 5% of the floor."))
    table = TableSpec(
        key="decision_study", title=f"Decision study (E5): error variance of an average of "
        f"k LLMs × q prompts ({cfg['error_scale']} scale)",
        frame=t, labels=["llms", "prompts"],
        intervals={"superpop error [94% HDI]": "superpopulation",
                   "finite-pop error [94% HDI]": "finite_population"},
        values={"floor share (superpop)": "superpopulation_floor_share",
                "floor share (finite)": "finite_population_floor_share"},
        caption=("the floor is what no number of LLMs removes: the task's bias, what every LLM "
                 "shares on a unit, lineage and the reference's own error (finite population: "
                 "subsets of the data's LLMs and prompts, blank beyond them)."))
    fig = FigureSpec("floor", res.decision_study,
                     caption="Error variance of an average over k LLMs (x) for each number of "
                             "prompts, superpopulation, posterior mean and 94% HDI; the dashed "
                             "line is the floor.",
                     alt="Line plot of the error variance falling with more LLMs towards a "
                         "dashed floor.")
    return Section("decision_study", "How many LLMs and prompts? The decision study (E5)",
                   text=text, tables=[table], figures=[fig])
