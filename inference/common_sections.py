"""The report sections every analysis has, whatever it measures: prior sensitivity (when
``misalign sensitivity`` has recorded it), the diagnostics behind the gate, and provenance.

Functions of a results object (``AnalysisResults``), duck-typed so that this module does not
import the class that imports it.
"""

from __future__ import annotations

import json
from typing import Any

import pandas as pd
import xarray as xr

from misalign.models.serialize import provenance

from .diagnostics import ESS_MIN, RHAT_MAX, element
from .sections import FigureSpec, Section, TableSpec

SENSITIVITY_GROUP = "prior_sensitivity"


def sensitivity_section(res: Any) -> Section | None:
    """Prior sensitivity (E6): power-scaling and the refit sweep, when recorded."""
    stored = getattr(res, "sensitivity", None) or {}
    if not stored:
        return None
    sec = Section("sensitivity", "Prior sensitivity (E6)", summary=False)
    if "powerscale" in stored:
        ps = stored["powerscale"]
        sec.text.append(
            "Power-scaling (Kallioinen et al. 2024): how much each reported quantity's "
            "posterior moves when the prior or the likelihood is raised to a power near 1. "
            f"Above {ps.attrs.get('threshold', 0.05)} the quantity is sensitive; ArviZ's "
            "diagnosis says whether the prior dominates or the two conflict.")
        frame = ps.to_dataframe().reset_index()
        label = "quantity" if "quantity" in frame else "component"  # older files: σ's only
        sec.tables.append(TableSpec(
            "powerscale", "power-scaling sensitivity", frame, labels=[label],
            values={"prior": "prior", "likelihood": "likelihood",
                    "diagnosis": "diagnosis"}))
    if "sweep" in stored:
        sweep = stored["sweep"].to_dataframe().reset_index()
        sec.text.append("Refits under named prior sets: posterior mean and 94% HDI of each "
                        "reported quantity under each set.")
        sec.figures.append(FigureSpec(
            "sweep", sweep, caption="Each quantity's posterior mean and 94% HDI under each "
            "prior set (rows).", alt="Forest plots, one panel per reported quantity, one row per "
            "prior set, showing how far the estimate moves when the priors change."))
        moved = (sweep.groupby("quantity", sort=False)["mean"]
                 .agg(lambda x: float(x.max() - x.min())).rename("range").reset_index())
        sec.tables.append(TableSpec(
            "sweep_range", "how far each quantity moves across the prior sets (max − min of "
            "the posterior means)", moved, labels=["quantity"], values={"range": "range"}))
    return sec


def diagnostics_section(res: Any) -> Section:
    gate = res.gate
    table = gate.table.copy()
    table["ok"] = table["ok"].map({True: "yes", False: "NO"})
    sec = Section("diagnostics", "Diagnostics", summary=False,
                  text=[*gate.message().splitlines(),
                        f"Every reported quantity is checked: R-hat ≤ {RHAT_MAX}, bulk and tail "
                        f"ESS ≥ {ESS_MIN}, no divergent transitions."])
    sec.tables.append(TableSpec(
        "gate", "convergence of every reported quantity", table, labels=["variable", "name"],
        values={"R-hat": "rhat", "bulk ESS": "ess_bulk", "tail ESS": "ess_tail", "ok": "ok"}))
    worst = table.assign(m=table[["ess_bulk", "ess_tail"]].min(axis=1)).sort_values("m").iloc[0]
    draws = element(res.gate_variables(), worst["variable"], worst["name"])
    # DataTree variable names cannot hold "/".
    label = f"{worst['variable']}[{worst['name']}]".replace("/", ", ")
    sec.figures.append(FigureSpec(
        "rank", xr.Dataset({label: draws}),
        caption=(f"Rank plot of the worst-mixing reported quantity, {label} (lowest ESS: "
                 f"{worst['m']:.0f}): each chain's ranks should look uniform."),
        alt=f"Rank plot per chain of {label}; well-mixed chains give flat, overlapping "
            "histograms."))
    return sec


def provenance_section(res: Any) -> Section:
    attrs = dict(getattr(res, "attrs", {}) or provenance())
    fit = res.model.fit_config
    versions = json.loads(attrs.get("package_versions", "{}"))
    rows = [("analysis", res.kind), ("results file", str(res.path or "not saved")),
            ("written", attrs.get("created_at", "")), ("data hash", res.model.data.data_hash()),
            ("command", fit.get("command", "from Python")),
            ("sampler", f"{fit.get('sampler')}: {fit.get('chains')} chains × "
                        f"{fit.get('draws')} draws after {fit.get('tune')} warm-up, "
                        f"target_accept {fit.get('target_accept')}, seed {fit.get('seed')}")]
    rows += [(f"version: {k}", v) for k, v in versions.items()]
    info = pd.DataFrame(rows, columns=["what", "value"])
    priors = pd.DataFrame([(k, str(v)) for k, v in res.model.priors.items()],
                          columns=["name", "prior"])
    return Section("provenance", "Provenance", summary=False, tables=[
        TableSpec("provenance", "how these results were made", info, labels=["what"],
                  values={"value": "value"}),
        TableSpec("priors", "priors (override any by name with --priors FILE.toml)", priors,
                  labels=["name"], values={"prior": "prior"})])
