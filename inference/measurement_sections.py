"""The joint measurement model's report: who agrees with whom, the noise ceiling, and E1 net
of the reference. Functions of a ``MeasurementResults`` (duck-typed: not imported here)."""

from __future__ import annotations

from typing import Any

import pandas as pd
import xarray as xr

from .sections import FigureSpec, Number, Section, Sentence, TableSpec

NET_WORDS = {
    "attributable": "depends on which LLM and prompt you choose",
    "shared": "is shared by all LLMs",
    "lineage": "is shared within a family (or by the prompts of one LLM) beyond that",
    "residual": "is the LLMs' own noise",
    "reference": "is the experts' own severity and noise",
}


def headline(res: Any) -> Sentence:
    n = res.headline_numbers()

    def num(key: str, style: str = "decimal") -> Number:
        return Number(key, *n[key], style=style)

    parts: Sentence = [
        "A single LLM rating of a unit agrees with another LLM's ", num("inter"),
        " (mean correlation over pairs of LLM × prompt, averaged over tasks) and with a single "
        "expert rating ", num("expert"),
        f"; the probability that LLMs agree more with each other than with an expert is "
        f"{n['p'][0]:.2f}. A single expert rating correlates ", num("ceiling"),
        " with true quality (the noise ceiling). Of E1's error (LLM score − expert reference), ",
        num("net:reference", "percent"), " is the experts' own severity and noise, which E1 "
        "counts as shared by all LLMs; against true quality, ",
        num("net:shared", "percent"), " is shared by all LLMs (compression ",
        num("net:compression", "percent"), ", a shared deviation ",
        num("net:shared_deviation", "percent"), ") and ", num("net:attributable", "percent"),
        " depends on which LLM and prompt you choose. (94% intervals.)"]
    return parts


def _comparison_table(res: Any) -> TableSpec | None:
    comp = res.comparison
    if comp is None:
        return None
    net = res.net_table
    net = net[net["task"] == "all tasks"].set_index("component")
    rows = []
    e1 = {str(a): comp.sel(aggregate=a) for a in comp["aggregate"].values}
    pairs = (("attributable", ["attributable"]), ("shared", ["compression", "shared_deviation"]),
             ("lineage", ["lineage"]), ("reference", ["reference"]), ("residual", ["residual"]),
             ("task", []))
    for name, parts in pairs:
        row: dict[str, Any] = {"part": name}
        if name in e1:
            row |= {f"e1_{k}": float(e1[name][k]) for k in ("mean", "lower", "upper")}
        if parts:
            row["net_mean"] = f"{float(net.loc[parts, 'share_mean'].sum()):.3f}"
            row["net_parts"] = " + ".join(f"{p} {net.loc[p, 'share_mean']:.3f}" for p in parts)
        else:
            row["net_mean"], row["net_parts"] = "—", "no counterpart (per-task model)"
        rows.append(row)
    frame = pd.DataFrame(rows)
    return TableSpec(
        key="e1_versus_net", title="E1's aggregates beside the joint model's split (shares)",
        frame=frame, labels=["part"], intervals={"E1 (finite population)": "e1"},
        values={"joint model (all tasks)": "net_mean", "made of": "net_parts"},
        caption=("E1 partitions LLM score − expert reference across tasks; the joint model "
                 "splits the same error per task against true quality and averages the "
                 "variances over tasks, so E1's task share has no counterpart here and E1's "
                 "shared share holds the reference part."))


def sections(res: Any) -> list[Section]:
    levels = TableSpec(
        key="agreement", title="Who agrees with whom (posterior mean [94% HDI])",
        frame=res.level_table, labels=["task", "level"],
        intervals={"mean inter-LLM corr": "inter", "mean LLM–expert corr": "expert",
                   "noise ceiling": "ceiling"},
        values={"P(inter > expert)": "p_inter_above_expert"}, group_by="task",
        caption=("a single rating of a cell (unit × task), and the mean over a lesson's and a "
                 "teacher's cells in the data's design; LLM = one LLM × prompt; expert = a "
                 "single expert rating; noise ceiling = an expert rating's correlation with "
                 "true quality."))
    net = TableSpec(
        key="net_e1", title="E1 net of the reference: the LLM error against true quality",
        frame=res.net_table, labels=["task", "component"],
        intervals={"variance (expert SD²)": "variance", "share": "share"}, group_by="task",
        caption=("shares of E1's error variance (LLM score − expert reference); compression + "
                 "shared_deviation is what all LLMs share; reference is the experts' own part."))
    tables = [levels, net]
    comparison = _comparison_table(res)
    if comparison is not None:
        tables.append(comparison)
    cell = res.matrix.sel(level="cell")
    ceiling = res.agreement["noise_ceiling"].sel(level="cell").mean(("chain", "draw"))
    with_expert = res.agreement["corr_expert"].sel(level="cell").mean(("chain", "draw"))
    heat = FigureSpec(
        "heatmap", xr.Dataset({"corr": cell["mean"], "expert": with_expert,
                               "ceiling": ceiling}),
        caption=("Correlations of single ratings of a cell: between every two LLM × prompt "
                 "sources and with a single expert rating (last row), posterior means per "
                 "task; the title gives the noise ceiling (an expert's correlation with true "
                 "quality)."),
        alt="Heatmaps, one per task, of the correlation between LLM sources and with an expert; "
            "brighter cells are higher correlations; the LLM–LLM block is brighter than the "
            "expert row.")
    shares = FigureSpec(
        "forest", xr.Dataset({"share of E1's error": res.net["share_all_tasks"]}),
        caption="The error of LLM ratings against true quality, over all tasks: each part's "
                "share of E1's error variance, posterior mean and 94% HDI.",
        alt="Forest plot of the attributable, compression, shared deviation, lineage, residual "
            "and reference shares.")
    main = Section("measurement", "Who agrees with whom (E2), and E1 net of the experts' noise",
                   headline=headline(res), tables=tables, figures=[heat, shares])
    sources = TableSpec(
        key="sources", title="Each source's correlation with an expert and with true quality",
        frame=res.source_table, labels=["level", "task", "source"],
        intervals={"with a single expert": "expert", "with true quality": "quality"},
        group_by="task")
    pairs = TableSpec(
        key="pairs", title="Correlation of every two sources (posterior mean [94% HDI])",
        frame=res.matrix_table, labels=["level", "task", "source", "source_bis"],
        values={"mean": "mean", "lower": "lower", "upper": "upper"})
    detail = Section("measurement_detail", "Agreement in detail: every source and pair",
                     tables=[sources, pairs], summary=False)
    return [main, *_value_added_section(res), *_ensemble_section(res), *_design_section(res),
            detail]


def _ensemble_spec(table: pd.DataFrame, key: str, title: str, level: str) -> TableSpec:
    where = "(cell)" if level == "cell" else "(teacher)"
    intervals = {f"with an expert {where}": "expert", f"with true quality {where}": "quality"}
    values = {}
    if "va_mean" in table:
        intervals |= {"with value-added (teacher)": "va",
                      "misalignment with value-added": "va_misalignment"}
        values = {"P(below the median source on value-added)": "p_below_median_va"}
    return TableSpec(
        key=key, title=title, frame=table, labels=["task", "ensemble"], intervals=intervals,
        values=values, group_by="task",
        caption=("An ensemble is a weighted mean of the sources' single ratings of a cell "
                 "(data/ensembles.py); its shared deviation keeps its full weight however many "
                 "sources it averages. The majority vote of the rounded ratings comes from "
                 "the posterior predictive (inference/majority.py)."))


def _ensemble_section(res: Any) -> list[Section]:
    table = res.ensemble_table
    if table is None:
        return []
    spec = _ensemble_spec(table, "ensembles",
                          "Ensembles of LLM ratings (E4) beside the median single source", "cell")
    figures = []
    ens = res.ensembles
    if "corr_va" in ens:
        figures.append(FigureSpec(
            "forest", xr.Dataset({"ensemble": ens["corr_va"],
                                  "median single source": ens["median_source_va"]}),
            caption="Each ensemble's teacher-level correlation with value-added beside the "
                    "median single source's, per task: posterior mean and 94% HDI.",
            alt="Forest plot of the ensembles' and the median single source's correlation with "
                "value-added, per task."))
    return [Section("ensembles", "Ensembles (E4)", tables=[spec], figures=figures)]


def _va_spec(design: str) -> dict:
    return dict(
        labels=["task", "rater"],
        intervals={"corr with value-added": "corr",
                   "misalignment (− experts) with value-added": "misalignment"},
        values={"P(corr < 0)": "p_corr_below_0",
                "P(misalignment corr < 0)": "p_misalignment_below_0"}, group_by="task",
        caption=("A rater's teacher score is the mean of its ratings over the teacher's cells "
                 f"{design}; the correlations are of the latent model (no plug-in teacher "
                 "means); misalignment is the source's teacher score minus the experts'."))


def _design_section(res: Any) -> list[Section]:
    """E3 and E4 for teachers scored over a stated number of lessons and segments."""
    if res.stated is None:
        return []
    n, m = res.stated
    design = f"{n} lesson{'s' * (n > 1)} × {m} segment{'s' * (m > 1)} per teacher"
    tables = []
    if res.design_va_table is not None:
        tables.append(TableSpec(key="value_added_at_design",
                                title=f"Alignment with value-added (E3) at {design}",
                                frame=res.design_va_table, **_va_spec(f"over {design}")))
    tables.append(_ensemble_spec(res.design_ensemble_table, "ensembles_at_design",
                                 f"Ensembles (E4) at {design}", "teacher"))
    return [Section("at_design", f"E3 and E4 at {design}", tables=tables)]


def _value_added_section(res: Any) -> list[Section]:
    """E3: a compact table (true quality, the experts, the sources' mean) with the forest plot
    in the summary; every source in the full report."""
    table = res.va_table
    if table is None:
        return []
    va = res.impact
    spec = _va_spec("in the data's design")
    compact = table[table["rater"].isin(["true quality", "experts", "mean over sources"])]
    forest = FigureSpec(
        "forest", xr.Dataset({"true quality": va["corr_va_quality"],
                              "experts": va["corr_va_expert"],
                              "LLM × prompt": va["corr_va"]}),
        caption="Each rater's teacher-level correlation with value-added, per task: posterior "
                "mean and 94% HDI.",
        alt="Forest plot of the correlation with value-added of true quality, the experts and "
            "every LLM × prompt source, per task.")
    main = Section("value_added", "Alignment with value-added (E3)", tables=[TableSpec(
        key="value_added", title="Alignment with value-added (E3), teacher level",
        frame=compact.reset_index(drop=True), **spec)], figures=[forest])
    detail = Section("value_added_detail", "Alignment with value-added: every source",
                     tables=[TableSpec(key="value_added_sources",
                                       title="Every source's alignment with value-added",
                                       frame=table, **spec)], summary=False)
    return [main, detail]
