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

LOG_2PI = float(np.log(2 * np.pi))


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
        stats.grouped = GroupedCells.build(stats, force=grouped)
        return stats


def np_segment_sum(x: np.ndarray, idx: np.ndarray, n: int) -> np.ndarray:
    return np.bincount(idx, weights=x, minlength=n)


def pt_segment_sum(x, idx: np.ndarray, n: int):
    import pytensor.tensor as pt

    return pt.inc_subtensor(pt.zeros((n,), dtype=x.dtype)[idx], x)


def nested_logp(m, s2, parents: list[tuple[str, np.ndarray]], sigma2: dict, xp,
                segsum: Callable):
    """Integrate the nested levels above pseudo-observations ``m`` with variances ``s2``.

    ``parents`` lists (level, parent index of each child); ``sigma2[level]`` is that level's
    effect variance. Returns Σ log R over every parent plus Σ log N(m_top; 0, s_top²).
    """
    total = 0.0
    for level, idx in parents:
        n_par = int(idx.max()) + 1
        k = np.bincount(idx, minlength=n_par).astype(np.float64)
        lam = 1.0 / s2
        Lam = segsum(lam, idx, n_par)
        mbar = segsum(lam * m, idx, n_par) / Lam
        dev = m - mbar[idx]
        total = total + (-0.5 * float(np.sum(k - 1)) * LOG_2PI + 0.5 * xp.sum(xp.log(lam))
                         - 0.5 * xp.sum(xp.log(Lam)) - 0.5 * xp.sum(lam * dev**2))
        m, s2 = mbar, sigma2[level] + 1.0 / Lam
    top = -0.5 * xp.sum(LOG_2PI + xp.log(s2) + m**2 / s2)
    return total + top


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
        return level1 + stats.grouped.logp(stats, g_pat, sigma2_cell, sigma2_resid, sigma2, xp,
                                           segsum)
    tau2 = sigma2_cell + sigma2_resid / n
    return level1 + nested_logp(cell_resid / n, tau2, stats.parents, sigma2, xp, segsum)


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
