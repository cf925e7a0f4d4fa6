"""The convergence gate every reported quantity must pass before its numbers are trusted.

Each analysis names the derived variables it reports (``AnalysisResults.gate_variables``); the
gate checks R-hat and bulk/tail ESS of every element of them, and the divergences.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import xarray as xr

from misalign.models.base import SAMPLE_DIMS

RHAT_MAX = 1.01
ESS_MIN = 400


@dataclass
class GateResult:
    passed: bool
    divergences: int
    table: pd.DataFrame  # one row per quantity: rhat, ess_bulk, ess_tail, ok
    failures: list[str] = field(default_factory=list)
    advice: list[str] = field(default_factory=list)

    def message(self) -> str:
        if self.passed:
            return (f"diagnostics gate passed: R-hat ≤ {RHAT_MAX}, bulk and tail ESS ≥ {ESS_MIN} "
                    "for every reported quantity, no divergences")
        return "\n".join(["diagnostics gate FAILED:", *(f"  - {f}" for f in self.failures),
                          "what to try:", *(f"  - {a}" for a in self.advice)])

    def to_dict(self) -> dict:
        return {"passed": self.passed, "divergences": self.divergences,
                "failures": self.failures, "advice": self.advice,
                "rhat_max": RHAT_MAX, "ess_min": ESS_MIN}


def _labels(da: xr.DataArray) -> tuple[xr.DataArray, list[str]]:
    """The array with its non-sample dims stacked into one, and a label per element
    ("CLPC/teacher" for dimension × component)."""
    other = [d for d in da.dims if d not in SAMPLE_DIMS]
    if not other:
        return da.expand_dims("quantity", axis=-1), [""]
    if len(other) == 1:
        return da, [str(v) for v in da[other[0]].values.tolist()]
    flat = da.stack(_q=other).transpose(*SAMPLE_DIMS, "_q")
    labels = ["/".join(map(str, v)) for v in flat["_q"].values]
    return flat.drop_vars([*other, "_q"]).rename(_q="quantity"), labels


def diagnostics_gate(variables: xr.Dataset, sample_stats: xr.Dataset | None) -> GateResult:
    """R-hat, bulk and tail ESS of every element of every variable, and the divergences."""
    import arviz as az

    rows = []
    for var in variables.data_vars:
        da, labels = _labels(variables[var])
        dim = [d for d in da.dims if d not in SAMPLE_DIMS][0]
        values = {k: np.asarray(f(da).transpose(dim).values) for k, f in (
            ("rhat", lambda x: az.rhat(x, sample_dims=list(SAMPLE_DIMS))),
            ("ess_bulk", lambda x: az.ess(x, method="bulk", sample_dims=list(SAMPLE_DIMS))),
            ("ess_tail", lambda x: az.ess(x, method="tail", sample_dims=list(SAMPLE_DIMS))))}
        for i, name in enumerate(labels):
            rows.append({"variable": var, "name": name} | {k: float(v[i]) for k, v in
                                                         values.items()})
    table = pd.DataFrame(rows)
    table["ok"] = ((table["rhat"] <= RHAT_MAX) & (table["ess_bulk"] >= ESS_MIN)
                   & (table["ess_tail"] >= ESS_MIN))
    div = int(sample_stats["diverging"].sum()) if sample_stats is not None and \
        "diverging" in sample_stats else 0
    failures, advice = [], []
    bad_rhat = table[table["rhat"] > RHAT_MAX]
    bad_ess = table[(table["ess_bulk"] < ESS_MIN) | (table["ess_tail"] < ESS_MIN)]
    n_chains = variables.sizes.get("chain", 1)
    if n_chains < 2:
        failures.append("only one chain: R-hat cannot detect non-convergence")
        advice.append("run at least 4 chains (--chains 4)")
    if len(bad_rhat):
        worst = bad_rhat.sort_values("rhat").iloc[-1]
        failures.append(f"R-hat above {RHAT_MAX} for {len(bad_rhat)} quantit"
                        f"{'y' if len(bad_rhat) == 1 else 'ies'}; worst "
                        f"{worst['variable']}[{worst['name']}] = {worst['rhat']:.3f}")
        advice.append("run longer warm-up and more draws (--tune 2000 --draws 2000)")
    if len(bad_ess):
        worst = bad_ess.assign(m=bad_ess[["ess_bulk", "ess_tail"]].min(axis=1)).sort_values(
            "m").iloc[0]
        failures.append(f"ESS below {ESS_MIN} for {len(bad_ess)} quantit"
                        f"{'y' if len(bad_ess) == 1 else 'ies'}; lowest "
                        f"{worst['variable']}[{worst['name']}] = {worst['m']:.0f}")
        advice.append("draw more samples (--draws); ESS grows with the number of draws")
    if div:
        failures.append(f"{div} divergent transition(s)")
        advice.append("divergences mean the sampler could not explore part of the posterior: "
                      "raise --target-accept (e.g. 0.99), check that the priors suit the error "
                      "scale (--priors), or try a longer warm-up (--tune)")
    passed = not failures
    return GateResult(passed=passed, divergences=div, table=table, failures=failures,
                      advice=advice)


def element(variables: xr.Dataset, variable: str, name: str) -> xr.DataArray:
    """The draws (chain, draw) of one row of the gate table."""
    da, labels = _labels(variables[variable])
    dim = [d for d in da.dims if d not in SAMPLE_DIMS][0]
    return da.isel({dim: labels.index(name)}, drop=True).drop_vars(
        [c for c in da.coords if c not in SAMPLE_DIMS], errors="ignore")
