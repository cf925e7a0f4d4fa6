"""Shared recovery check: every true share inside its reported 94% HDI."""

from __future__ import annotations

import pandas as pd


def coverage(results, truth: dict, error_scale: str = "expert-sd") -> pd.DataFrame:
    t = truth["error_scales"][error_scale]
    tab = results.table.copy()
    tab["truth"] = [t["shares"].get(n) if k == "component" else t["aggregates"].get(n)
                    for k, n in zip(tab["kind"], tab["name"], strict=True)]
    tab["inside"] = (tab["truth"] >= tab["finite_lower"]) & (tab["truth"] <= tab["finite_upper"])
    return tab
