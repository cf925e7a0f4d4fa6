"""Figures as matplotlib ``Figure`` objects, drawn by ArviZ where ArviZ has the plot (forest,
rank) and with matplotlib's object API otherwise; no backend is ever switched here.

``render(spec)`` draws a ``FigureSpec`` by its ``kind`` (the keys of ``FIGURES``).
"""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr
from matplotlib.figure import Figure

from misalign.data.atomic import atomic_write
from misalign.inference.sections import FigureSpec


def save_figure(fig: Figure, path: str | Path, dpi: int = 110) -> Path:
    """Write a PNG atomically."""
    return atomic_write(path, lambda p: fig.savefig(p, format="png", dpi=dpi,
                                                    bbox_inches="tight"))


def png_bytes(fig: Figure, dpi: int = 100) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    return buf.getvalue()


def _arviz_figure(pc) -> Figure:
    return pc.viz["figure"].item()


def forest_figure(draws: xr.Dataset, **options) -> Figure:
    """ArviZ forest plot (posterior mean and 94% HDI) of every variable and label."""
    import arviz_plots as azp

    pc = azp.plot_forest(xr.DataTree.from_dict({"posterior": draws}), combined=True,
                         backend="matplotlib", **options)
    return _arviz_figure(pc)


def rank_figure(draws: xr.Dataset, **options) -> Figure:
    """ArviZ rank plot per chain (uniform ranks = chains that mixed)."""
    import arviz_plots as azp

    pc = azp.plot_rank(xr.DataTree.from_dict({"posterior": draws}), backend="matplotlib",
                       **options)
    return _arviz_figure(pc)


def decision_figure(dstudy: xr.Dataset, n_segments: int = 4, raters: tuple[int, ...] = (1, 2),
                    target: float = 0.8) -> Figure:
    """Generalizability against lessons per dimension, one line per number of raters."""
    dims = list(dstudy["dimension"].values)
    cols = min(len(dims), 4)
    rows = -(-len(dims) // cols)
    fig = Figure(figsize=(3.2 * cols, 2.6 * rows))
    axes = np.atleast_1d(fig.subplots(rows, cols, sharey=True, squeeze=False)).ravel()
    n = dstudy["n_lessons"].values
    for ax, dim in zip(axes, dims, strict=False):
        for r in raters:
            sel = {"dimension": dim, "n_segments": n_segments, "n_raters": r}
            m = dstudy["generalizability_mean"].sel(sel).values
            lo = dstudy["generalizability_lower"].sel(sel).values
            hi = dstudy["generalizability_upper"].sel(sel).values
            (line,) = ax.plot(n, m, marker="o", ms=3, label=f"{r} rater{'s' if r > 1 else ''}")
            ax.fill_between(n, lo, hi, color=line.get_color(), alpha=0.2)
        ax.axhline(target, color="grey", ls="--", lw=1)
        ax.set_title(str(dim))
        ax.set_xlabel("lessons per teacher")
        ax.set_ylim(0, 1)
    axes[0].set_ylabel("generalizability Eρ²")
    axes[0].legend(loc="lower right", fontsize=8)
    for ax in axes[len(dims):]:
        ax.set_visible(False)
    fig.tight_layout()
    return fig


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


def _short(label: str) -> str:
    """A source label without the provider prefix ("openai/gpt-4o × cot" → "gpt-4o × cot")."""
    return " × ".join(p.rsplit("/", 1)[-1] for p in str(label).split(" × "))


def heatmap_figure(data: xr.Dataset, max_tasks: int = 8) -> Figure:
    """Per task, the correlation matrix of the sources with a last row and column for a single
    expert rating; the noise ceiling in the title."""
    tasks = list(data["task"].values)[:max_tasks]
    src = [_short(s) for s in data["source"].values]
    S = len(src)
    cols = min(len(tasks), 3)
    rows = -(-len(tasks) // cols)
    side = 0.28 * (S + 1) + 1.6
    fig = Figure(figsize=(side * cols + 1.0, side * rows))
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    image = None
    for ax, task in zip(axes, tasks, strict=False):
        m = np.full((S + 1, S + 1), np.nan)
        m[:S, :S] = data["corr"].sel(task=task).values
        m[S, :S] = m[:S, S] = data["expert"].sel(task=task).values
        image = ax.imshow(m, vmin=0, vmax=1, cmap="viridis")
        labels = [*src, "expert"]
        ax.set_xticks(range(S + 1), labels, rotation=90, fontsize=6)
        ax.set_yticks(range(S + 1), labels, fontsize=6)
        ceiling = float(data["ceiling"].sel(task=task))
        ax.set_title(f"{task} (noise ceiling {ceiling:.2f})", fontsize=9)
    for ax in axes[len(tasks):]:
        ax.set_visible(False)
    if image is not None:
        fig.colorbar(image, ax=list(axes[:len(tasks)]), shrink=0.6, label="correlation")
    return fig


def floor_figure(ds: xr.Dataset) -> Figure:
    """E5: superpopulation error variance against the number of LLMs, one line per number of
    prompts (1 and the largest), with the 94% band and the floor dashed."""
    from misalign.inference.summaries import hdi

    fig = Figure(figsize=(6, 3.6))
    ax = fig.subplots()
    err = ds["superpopulation_error"]
    ks = err["k"].values
    for q in sorted({int(err["q"].values[0]), int(err["q"].values[-1])}):
        e = err.sel(q=q)
        h = hdi(e)
        ax.plot(ks, e.mean(("chain", "draw")), marker="o", label=f"{q} prompt(s)")
        ax.fill_between(ks, h.sel(ci_bound="lower"), h.sel(ci_bound="upper"), alpha=0.2)
    ax.axhline(float(ds["superpopulation_floor"].mean()), ls="--", color="k", label="floor")
    ax.set_xlabel("LLMs averaged (k)")
    ax.set_ylabel("error variance")
    ax.legend(frameon=False)
    return fig


FIGURES: dict[str, Callable[..., Figure]] = {
    "forest": forest_figure, "rank": rank_figure, "decision": decision_figure,
    "sweep": sweep_figure, "heatmap": heatmap_figure, "floor": floor_figure,
}


def render(spec: FigureSpec) -> Figure:
    if spec.kind not in FIGURES:
        raise ValueError(f"no figure of kind '{spec.kind}' (known: {', '.join(FIGURES)})")
    return FIGURES[spec.kind](spec.data, **spec.options)


def release(fig: Figure) -> None:
    """Forget a figure ArviZ made through pyplot (pyplot keeps every figure alive)."""
    import matplotlib.pyplot as plt

    plt.close(fig)
