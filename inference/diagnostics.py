"""The convergence gate every reported share must pass before its numbers are trusted."""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd
import xarray as xr

from .shares import SAMPLE_DIMS, SHARE_VARS

RHAT_MAX = 1.01
ESS_MIN = 400


@dataclass
class GateResult:
    passed: bool
    divergences: int
    table: pd.DataFrame  # one row per share: rhat, ess_bulk, ess_tail, ok
    failures: list[str] = field(default_factory=list)
    advice: list[str] = field(default_factory=list)

    def message(self) -> str:
        if self.passed:
            return (f"diagnostics gate passed: R-hat ≤ {RHAT_MAX}, bulk and tail ESS ≥ {ESS_MIN} "
                    "for every share, no divergences")
        return "\n".join(["diagnostics gate FAILED:", *(f"  - {f}" for f in self.failures),
                          "what to try:", *(f"  - {a}" for a in self.advice)])

    def to_dict(self) -> dict:
        return {"passed": self.passed, "divergences": self.divergences,
                "failures": self.failures, "advice": self.advice,
                "rhat_max": RHAT_MAX, "ess_min": ESS_MIN}


def diagnostics_gate(shares: xr.Dataset, sample_stats: xr.Dataset | None,
                     share_vars: tuple[str, ...] = SHARE_VARS) -> GateResult:
    import arviz as az

    rows = []
    for var in share_vars:
        da = shares[var]
        other = [d for d in da.dims if d not in SAMPLE_DIMS][0]
        rhat = az.rhat(da, sample_dims=list(SAMPLE_DIMS))
        bulk = az.ess(da, method="bulk", sample_dims=list(SAMPLE_DIMS))
        tail = az.ess(da, method="tail", sample_dims=list(SAMPLE_DIMS))
        for name in da[other].values.tolist():
            rows.append({"share": var, "name": name, "rhat": float(rhat.sel({other: name})),
                         "ess_bulk": float(bulk.sel({other: name})),
                         "ess_tail": float(tail.sel({other: name}))})
    table = pd.DataFrame(rows)
    table["ok"] = ((table["rhat"] <= RHAT_MAX) & (table["ess_bulk"] >= ESS_MIN)
                   & (table["ess_tail"] >= ESS_MIN))
    div = int(sample_stats["diverging"].sum()) if sample_stats is not None and \
        "diverging" in sample_stats else 0
    failures, advice = [], []
    bad_rhat = table[table["rhat"] > RHAT_MAX]
    bad_ess = table[(table["ess_bulk"] < ESS_MIN) | (table["ess_tail"] < ESS_MIN)]
    n_chains = shares.sizes.get("chain", 1)
    if n_chains < 2:
        failures.append("only one chain: R-hat cannot detect non-convergence")
        advice.append("run at least 4 chains (--chains 4)")
    if len(bad_rhat):
        worst = bad_rhat.sort_values("rhat").iloc[-1]
        failures.append(f"R-hat above {RHAT_MAX} for {len(bad_rhat)} share(s); worst "
                        f"{worst['share']}[{worst['name']}] = {worst['rhat']:.3f}")
        advice.append("run longer warm-up and more draws (--tune 2000 --draws 2000)")
    if len(bad_ess):
        worst = bad_ess.assign(m=bad_ess[["ess_bulk", "ess_tail"]].min(axis=1)).sort_values(
            "m").iloc[0]
        failures.append(f"ESS below {ESS_MIN} for {len(bad_ess)} share(s); lowest "
                        f"{worst['share']}[{worst['name']}] = {worst['m']:.0f}")
        advice.append("draw more samples (--draws); ESS grows with the number of draws")
    if div:
        failures.append(f"{div} divergent transition(s)")
        advice.append("divergences mean the sampler could not explore part of the posterior: "
                      "raise --target-accept (e.g. 0.99), check that the priors suit the error "
                      "scale (--priors), or try a longer warm-up (--tune)")
    passed = not failures
    return GateResult(passed=passed, divergences=div, table=table, failures=failures,
                      advice=advice)
