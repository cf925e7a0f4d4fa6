"""Marginal likelihood of the Gaussian E1 model from sufficient statistics (LIKELIHOOD.md).

The nested effects (unit×task, unit, transcript, teacher) are integrated out level by level, so
one gradient costs O(design cells + cells + units + …), whatever the number of ratings. The same
recursion written against ``numpy`` or ``pytensor.tensor`` (the ``xp`` argument) serves the
sampler and the tests, which check it against a dense multivariate normal.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .grouped import GroupedCells
from .recursion import LOG_2PI, batched_ops, nested_logp, np_segment_sum


@dataclass
class SufficientStats:
    """One pass over the ratings; nothing below needs them again."""

    n_design: int
    cell_n: np.ndarray  # ratings per cell
    cell_sum: np.ndarray  # Σ y over the cell
    design_n: np.ndarray  # ratings per design cell (llm, prompt, task)
    design_sum: np.ndarray  # Σ y per design cell
    sum_sq: float  # Σ y²
    patterns: np.ndarray  # distinct rows of n_cd (cell × design counts), dense
    cell_pattern: np.ndarray  # each cell's row in ``patterns``
    parents: list[tuple[str, np.ndarray]]  # level name, parent index of each child node
    grouped: GroupedCells | None = None  # the cell level folded into patterns (grouped.py)

    @classmethod
    def from_arrays(cls, y: np.ndarray, design: np.ndarray, n_design: int, cell: np.ndarray,
                    parents: list[tuple[str, np.ndarray]], grouped: bool | None = None
                    ) -> SufficientStats:
        """Reduce the ratings once. ``grouped``: None picks the faster form (see grouped.py)."""
        n_cells = int(cell.max()) + 1
        cell_n = np.bincount(cell, minlength=n_cells).astype(np.float64)
        cell_sum = np.bincount(cell, weights=y, minlength=n_cells)
        design_n = np.bincount(design, minlength=n_design).astype(np.float64)
        design_sum = np.bincount(design, weights=y, minlength=n_design)
        # Which design cells, how often, each cell holds; complete cells share one pattern.
        pair, count = np.unique(cell.astype(np.int64) * n_design + design, return_counts=True)
        pc, pd_ = pair // n_design, pair % n_design
        bounds = np.flatnonzero(np.diff(pc)) + 1
        starts = np.r_[0, bounds]
        keys: dict[bytes, int] = {}
        cell_pattern = np.empty(n_cells, dtype=np.int64)
        rows = []
        for c, (a, b) in enumerate(zip(starts, np.r_[bounds, len(pc)], strict=True)):
            key = pd_[a:b].tobytes() + count[a:b].tobytes()
            idx = keys.get(key)
            if idx is None:
                idx = keys[key] = len(rows)
                rows.append((pd_[a:b], count[a:b]))
            cell_pattern[c] = idx
        patterns = np.zeros((len(rows), n_design))
        for i, (d, n) in enumerate(rows):
            patterns[i, d] = n
        stats = cls(n_design=n_design, cell_n=cell_n, cell_sum=cell_sum, design_n=design_n,
                    design_sum=design_sum, sum_sq=float(np.dot(y, y)), patterns=patterns,
                    cell_pattern=cell_pattern, parents=parents)
        stats.grouped = GroupedCells.build(parents, patterns, cell_pattern, stats.cell_sum,
                                           force=grouped)
        return stats


def gaussian_marginal_logp(stats: SufficientStats, f, sigma2_cell, sigma2_resid,
                           sigma2: dict, xp=np, segsum: Callable = np_segment_sum):
    """log p(errors | design-cell means f, σ's) with every nested effect integrated out."""
    n = stats.cell_n
    g_pat = xp.dot(stats.patterns, f)  # Σ_d n_kd f_d for each pattern
    if stats.grouped is not None:
        sum_resid_sq = stats.grouped.resid_sq(g_pat, 1.0 / stats.grouped.pat_n, xp)
    else:
        cell_resid = stats.cell_sum - g_pat[stats.cell_pattern]
        sum_resid_sq = xp.sum(cell_resid**2 / n)
    ssw = (stats.sum_sq - 2 * xp.dot(f, stats.design_sum) + xp.dot(stats.design_n, f**2)
           - sum_resid_sq)
    level1 = (-0.5 * float(np.sum(n - 1)) * (LOG_2PI + xp.log(sigma2_resid))
              - 0.5 * float(np.sum(np.log(n))) - ssw / (2 * sigma2_resid))
    if stats.grouped is not None:
        return level1 + stats.grouped.logp(stats.parents, g_pat, sigma2_cell, sigma2_resid,
                                           sigma2, xp, segsum)
    tau2 = sigma2_cell + sigma2_resid / n
    return level1 + nested_logp(cell_resid / n, tau2, stats.parents, sigma2, xp, segsum)


@dataclass
class CellLeaves:
    """Per-cell data for the likelihood split by top-level node (power-scaling, LOO): the leaf
    terms K_c need each cell's own sums, which ``SufficientStats`` pools away."""

    cell_n: np.ndarray
    cell_sum: np.ndarray
    cell_sq: np.ndarray
    pair_cell: np.ndarray  # (cell, design) pairs
    pair_design: np.ndarray
    pair_n: np.ndarray
    pair_sum: np.ndarray
    parents: list[tuple[str, np.ndarray]]
    cell_top: np.ndarray  # the top-level node of each cell
    n_top: int

    @classmethod
    def from_arrays(cls, y: np.ndarray, design: np.ndarray, n_design: int, cell: np.ndarray,
                    parents: list[tuple[str, np.ndarray]]) -> CellLeaves:
        n_cells = int(cell.max()) + 1
        key = cell.astype(np.int64) * n_design + design
        pair, cnt = np.unique(key, return_counts=True)
        top = np.arange(n_cells)
        for _, idx in parents:
            top = idx[top]
        return cls(cell_n=np.bincount(cell, minlength=n_cells).astype(float),
                   cell_sum=np.bincount(cell, weights=y, minlength=n_cells),
                   cell_sq=np.bincount(cell, weights=y * y, minlength=n_cells),
                   pair_cell=pair // n_design, pair_design=pair % n_design,
                   pair_n=cnt.astype(float),
                   pair_sum=np.bincount(np.searchsorted(pair, key), weights=y,
                                        minlength=len(pair)),
                   parents=parents, cell_top=top, n_top=int(top.max()) + 1)

    def logp(self, f: np.ndarray, s2_cell: np.ndarray, s2_res: np.ndarray,
             s2_levels: dict[str, np.ndarray]) -> np.ndarray:
        """(draws, top nodes) marginal log likelihoods. ``f``: (draws, design cells); each σ²:
        (draws, 1) or (draws, nodes of its level)."""
        segsum, take = batched_ops(f.shape[0])
        n_cells = len(self.cell_n)
        fp = f[:, self.pair_design]
        g = segsum(self.pair_n * fp, self.pair_cell, n_cells)
        yf = segsum(self.pair_sum * fp, self.pair_cell, n_cells)
        ff = segsum(self.pair_n * fp**2, self.pair_cell, n_cells)
        resid = self.cell_sum - g
        ssw = self.cell_sq - 2 * yf + ff - resid**2 / self.cell_n
        leaf = (-0.5 * (self.cell_n - 1) * (LOG_2PI + np.log(s2_res))
                - 0.5 * np.log(self.cell_n) - ssw / (2 * s2_res))
        top = (self.cell_top, self.n_top)
        return segsum(leaf, self.cell_top, self.n_top) + nested_logp(
            resid / self.cell_n, s2_cell + s2_res / self.cell_n, self.parents, s2_levels, np,
            segsum, top=top, take=take)

    def logp_draws(self, f: np.ndarray, s2_cell, s2_res, s2_levels: dict, posterior,
                   top_name: str, chunk: int = 250):
        """``logp`` over all posterior draws in chunks (bounded memory), as a (chain, draw,
        ``top_name``) DataArray."""
        import xarray as xr

        parts = []
        for a in range(0, f.shape[0], chunk):
            b = slice(a, a + chunk)
            parts.append(self.logp(f[b], s2_cell[b], s2_res[b],
                                   {k: v[b] for k, v in s2_levels.items()}))
        n_chain, n_draw = posterior.sizes["chain"], posterior.sizes["draw"]
        ll = np.concatenate(parts).reshape(n_chain, n_draw, self.n_top)
        return xr.DataArray(ll, dims=("chain", "draw", top_name),
                            coords={"chain": posterior["chain"].values,
                                    "draw": posterior["draw"].values})


def cell_prior_logp(b, sigma2_cell, parents: list[tuple[str, np.ndarray]], sigma2: dict, xp,
                    segsum: Callable):
    """log p(b) for cell totals b_c = v_c + unit + transcript + … (Student-t model's latents)."""
    return nested_logp(b, sigma2_cell + 0.0 * b, parents, sigma2, xp, segsum)


def dense_gaussian_logp(y: np.ndarray, mean: np.ndarray, groups: list[tuple[np.ndarray, float]],
                        sigma2_resid: float) -> float:
    """Brute force: the multivariate normal with every nested covariance block written out."""
    cov = sigma2_resid * np.eye(len(y))
    for labels, s2 in groups:
        cov += s2 * (labels[:, None] == labels[None, :])
    sign, logdet = np.linalg.slogdet(cov)
    r = y - mean
    return float(-0.5 * (len(y) * LOG_2PI + logdet + r @ np.linalg.solve(cov, r)))
