"""Figures as matplotlib ``Figure`` objects (the object API: no pyplot state and no backend
switching, so the same code serves notebooks, the CLI and headless reports)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from misalign.data.atomic import atomic_write


def save_figure(fig: Figure, path: str | Path, dpi: int = 110) -> Path:
    """Write a PNG atomically."""
    return atomic_write(path, lambda p: fig.savefig(p, format="png", dpi=dpi))


def sweep_figure(table: pd.DataFrame) -> Figure:
    """Posterior mean and HDI of each quantity under each prior set (one panel each)."""
    qs = list(dict.fromkeys(table["quantity"]))
    sets = list(dict.fromkeys(table["prior_set"]))
    fig = Figure(figsize=(3.2 * len(qs), 0.45 * len(sets) + 1.5))
    axes = fig.subplots(1, len(qs), sharey=True, squeeze=False)[0]
    for ax, q in zip(axes, qs, strict=True):
        g = table[table["quantity"] == q].set_index("prior_set").loc[sets]
        y = range(len(sets))
        ax.errorbar(g["mean"], y, xerr=[g["mean"] - g["lower"], g["upper"] - g["mean"]],
                    fmt="o", capsize=3)
        ax.set_title(q)
        ax.set_xlabel("share")
    axes[0].set_yticks(range(len(sets)), sets)
    fig.tight_layout()
    return fig


def prior_check_figure(implied: pd.DataFrame, data_sd: float) -> Figure:
    """Histograms of the prior-implied aggregates (or component shares, when the model has no
    aggregates) and of the implied total SD, with the data's SD marked."""
    aggs = [c for c in implied.columns if c.startswith("aggregate:")] or \
        [c for c in implied.columns if c.startswith("share:")]
    fig = Figure(figsize=(3.2 * (len(aggs) + 1), 2.8))
    axes = fig.subplots(1, len(aggs) + 1)
    for ax, name in zip(axes, aggs, strict=False):
        ax.hist(implied[name], bins=40, range=(0, 1), color="tab:blue", alpha=0.8)
        ax.set_title(f"prior: {name.partition(':')[2]} share")
    axes[-1].hist(np.asarray(implied["error_sd"]), bins=40, color="tab:gray")
    axes[-1].axvline(data_sd, color="tab:red", label="data SD")
    axes[-1].set_title("prior: total error SD")
    axes[-1].legend()
    fig.tight_layout()
    return fig
