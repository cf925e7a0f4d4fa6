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
    """One pass over the ratings; nothing below needs them again.

    The recursion's lowest nodes are *leaves* (unit×task cells, or finer nodes below them such
    as a family's ratings of a cell); ``parents`` lists the levels above. Two generalisations of
    LIKELIHOOD.md, both exact: the residual variance may differ between *groups* of design
    cells (tasks), and each leaf may carry a known linear *offset* of extra effects (the
    reference experts' severities: its weight row times the effect vector).
    """

    n_design: int
    cell_n: np.ndarray  # ratings per leaf
    cell_sum: np.ndarray  # Σ y over the leaf
    design_n: np.ndarray  # ratings per design cell (llm, prompt, task)
    design_sum: np.ndarray  # Σ y per design cell
    design_group: np.ndarray  # residual group (task) of each design cell
    n_groups: int
    group_sum_sq: np.ndarray  # Σ y² per group
    group_df: np.ndarray  # Σ (n_c − 1) over the group's leaves
    sum_log_n: float
    patterns: np.ndarray  # distinct rows of n_cd (leaf × design counts), dense
    pattern_group: np.ndarray  # the group of each pattern's design cells
    pattern_offset: np.ndarray | None  # (patterns, offsets): each pattern's offset weights
    cell_pattern: np.ndarray  # each leaf's row in ``patterns``
    cell_group: np.ndarray  # each leaf's group
    parents: list[tuple[str, np.ndarray]]  # level name, parent index of each child node
    grouped: GroupedCells | None = None  # the leaf level folded into patterns (grouped.py)

    @property
    def sum_sq(self) -> float:
        return float(self.group_sum_sq.sum())

    @classmethod
    def from_arrays(cls, y: np.ndarray, design: np.ndarray, n_design: int, cell: np.ndarray,
                    parents: list[tuple[str, np.ndarray]], grouped: bool | None = None,
                    design_group: np.ndarray | None = None,
                    cell_offset: np.ndarray | None = None) -> SufficientStats:
        """Reduce the ratings once. ``cell`` is each rating's leaf; ``design_group`` the
        residual group of each design cell (default: one group); ``cell_offset`` the
        (leaves × offsets) weights of each leaf's offset. ``grouped``: None picks the faster
        form (see grouped.py)."""
        n_cells = int(cell.max()) + 1
        design_group = (np.zeros(n_design, dtype=np.int64) if design_group is None
                        else np.asarray(design_group, dtype=np.int64))
        n_groups = int(design_group.max()) + 1
        cell_n = np.bincount(cell, minlength=n_cells).astype(np.float64)
        cell_sum = np.bincount(cell, weights=y, minlength=n_cells)
        design_n = np.bincount(design, minlength=n_design).astype(np.float64)
        design_sum = np.bincount(design, weights=y, minlength=n_design)
        cell_group = np.zeros(n_cells, dtype=np.int64)
        cell_group[cell] = design_group[design]
        if np.any(design_group[design] != cell_group[cell]):
            raise ValueError("every leaf must hold design cells of one residual group")
        # Which design cells, how often, each leaf holds (and its offset weights); complete
        # leaves share one pattern.
        pair, count = np.unique(cell.astype(np.int64) * n_design + design, return_counts=True)
        pc, pd_ = pair // n_design, pair % n_design
        bounds = np.flatnonzero(np.diff(pc)) + 1
        starts = np.r_[0, bounds]
        keys: dict[bytes, int] = {}
        cell_pattern = np.empty(n_cells, dtype=np.int64)
        rows = []
        for c, (a, b) in enumerate(zip(starts, np.r_[bounds, len(pc)], strict=True)):
            key = pd_[a:b].tobytes() + count[a:b].tobytes()
            if cell_offset is not None:
                key += b"|" + np.ascontiguousarray(cell_offset[c]).tobytes()
            idx = keys.get(key)
            if idx is None:
                idx = keys[key] = len(rows)
                rows.append((pd_[a:b], count[a:b], c))
            cell_pattern[c] = idx
        patterns = np.zeros((len(rows), n_design))
        for i, (d, n, _) in enumerate(rows):
            patterns[i, d] = n
        firsts = np.array([c for _, _, c in rows], dtype=np.int64)
        stats = cls(
            n_design=n_design, cell_n=cell_n, cell_sum=cell_sum, design_n=design_n,
            design_sum=design_sum, design_group=design_group, n_groups=n_groups,
            group_sum_sq=np.bincount(design_group[design], weights=y * y, minlength=n_groups),
            group_df=np.bincount(cell_group, weights=cell_n - 1, minlength=n_groups),
            sum_log_n=float(np.sum(np.log(cell_n))), patterns=patterns,
            pattern_group=cell_group[firsts],
            pattern_offset=None if cell_offset is None else np.asarray(cell_offset)[firsts],
            cell_pattern=cell_pattern, cell_group=cell_group, parents=parents)
        stats.grouped = GroupedCells.build(parents, patterns, cell_pattern, stats.cell_sum,
                                           stats.pattern_group, force=grouped)
        return stats

    def pattern_means(self, f, offset, xp):
        """(design part, full) of each pattern's total Σ_i E[y_i] (design means, and the
        leaf's offset times its size)."""
        g = xp.dot(self.patterns, f)
        if self.pattern_offset is None or offset is None:
            return g, g
        return g, g + self.patterns.sum(axis=1) * xp.dot(self.pattern_offset, offset)


def gaussian_marginal_logp(stats: SufficientStats, f, sigma2_cell, sigma2_resid,
                           sigma2: dict, xp=np, segsum: Callable = np_segment_sum, offset=None):
    """log p(errors | design-cell means f, σ's) with every nested effect integrated out.

    ``sigma2_resid``: a scalar, or one residual variance per group; ``offset``: the values of
    the offset effects (e.g. expert severities), or None.
    """
    n = stats.cell_n
    g_design, g_pat = stats.pattern_means(f, offset, xp)
    one = stats.n_groups == 1
    s2e = sigma2_resid
    # The within-leaf sum of squares is blind to leaf-constant offsets: design part only.
    if stats.grouped is not None:
        terms = stats.grouped.resid_terms(g_design, 1.0 / stats.grouped.pat_n)
        resid_sq = xp.sum(terms) if one else segsum(terms, stats.pattern_group,
                                                     stats.n_groups)
    else:
        design_resid = stats.cell_sum - g_design[stats.cell_pattern]
        resid_sq = (xp.sum(design_resid**2 / n) if one else
                    segsum(design_resid**2 / n, stats.cell_group, stats.n_groups))
    if one:
        ssw = (stats.sum_sq - 2 * xp.dot(f, stats.design_sum) + xp.dot(stats.design_n, f**2)
               - resid_sq)
        level1 = (-0.5 * float(stats.group_df[0]) * (LOG_2PI + xp.log(s2e))
                  - 0.5 * stats.sum_log_n - ssw / (2 * s2e))
    else:
        ssw = (stats.group_sum_sq
               - 2 * segsum(f * stats.design_sum, stats.design_group, stats.n_groups)
               + segsum(stats.design_n * f**2, stats.design_group, stats.n_groups) - resid_sq)
        level1 = (xp.sum(-0.5 * stats.group_df * (LOG_2PI + xp.log(s2e)) - ssw / (2 * s2e))
                  - 0.5 * stats.sum_log_n)
    if stats.grouped is not None:
        s2e_pat = s2e if one else s2e[stats.pattern_group]
        s2e_val = s2e if one else s2e[stats.grouped.value_group]
        return level1 + stats.grouped.logp(stats.parents, g_pat, sigma2_cell, s2e_pat,
                                           s2e_val, sigma2, xp, segsum)
    cell_resid = stats.cell_sum - g_pat[stats.cell_pattern]
    tau2 = sigma2_cell + (s2e if one else s2e[stats.cell_group]) / n
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
    cell_group: np.ndarray | None = None  # residual group of each leaf (None: one group)
    cell_offset: np.ndarray | None = None  # (leaves, offsets) offset weights

    @classmethod
    def from_arrays(cls, y: np.ndarray, design: np.ndarray, n_design: int, cell: np.ndarray,
                    parents: list[tuple[str, np.ndarray]], design_group: np.ndarray | None = None,
                    cell_offset: np.ndarray | None = None) -> CellLeaves:
        n_cells = int(cell.max()) + 1
        group = None
        if design_group is not None:
            group = np.zeros(n_cells, dtype=np.int64)
            group[cell] = np.asarray(design_group)[design]
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
                   parents=parents, cell_top=top, n_top=int(top.max()) + 1, cell_group=group,
                   cell_offset=cell_offset)

    def logp(self, f: np.ndarray, s2_cell: np.ndarray, s2_res: np.ndarray,
             s2_levels: dict[str, np.ndarray], offset: np.ndarray | None = None) -> np.ndarray:
        """(draws, top nodes) marginal log likelihoods. ``f``: (draws, design cells); each σ²:
        (draws, 1) or (draws, nodes of its level); ``s2_res``: (draws, 1), (draws, leaves) or
        (draws, groups) with ``cell_group`` set; ``offset``: (draws, offsets) or None."""
        if self.cell_group is not None and s2_res.shape[1] != len(self.cell_n):
            s2_res = s2_res[:, self.cell_group]
        segsum, take = batched_ops(f.shape[0])
        n_cells = len(self.cell_n)
        fp = f[:, self.pair_design]
        g = segsum(self.pair_n * fp, self.pair_cell, n_cells)
        yf = segsum(self.pair_sum * fp, self.pair_cell, n_cells)
        ff = segsum(self.pair_n * fp**2, self.pair_cell, n_cells)
        resid = self.cell_sum - g
        ssw = self.cell_sq - 2 * yf + ff - resid**2 / self.cell_n
        if offset is not None and self.cell_offset is not None:
            resid = resid - self.cell_n * (offset @ self.cell_offset.T)
        leaf = (-0.5 * (self.cell_n - 1) * (LOG_2PI + np.log(s2_res))
                - 0.5 * np.log(self.cell_n) - ssw / (2 * s2_res))
        top = (self.cell_top, self.n_top)
        return segsum(leaf, self.cell_top, self.n_top) + nested_logp(
            resid / self.cell_n, s2_cell + s2_res / self.cell_n, self.parents, s2_levels, np,
            segsum, top=top, take=take)

    def logp_draws(self, f: np.ndarray, s2_cell, s2_res, s2_levels: dict, posterior,
                   top_name: str, chunk: int = 250, offset: np.ndarray | None = None):
        """``logp`` over all posterior draws in chunks (bounded memory), as a (chain, draw,
        ``top_name``) DataArray."""
        import xarray as xr

        parts = []
        for a in range(0, f.shape[0], chunk):
            b = slice(a, a + chunk)
            parts.append(self.logp(f[b], s2_cell[b], s2_res[b],
                                   {k: v[b] for k, v in s2_levels.items()},
                                   None if offset is None else offset[b]))
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
                        sigma2_resid) -> float:
    """Brute force: the multivariate normal with every nested covariance block written out.
    ``sigma2_resid``: a scalar or one residual variance per rating."""
    cov = np.diag(np.broadcast_to(np.asarray(sigma2_resid, dtype=float), (len(y),))).copy()
    for labels, s2 in groups:
        cov += s2 * (labels[:, None] == labels[None, :])
    sign, logdet = np.linalg.slogdet(cov)
    r = y - mean
    return float(-0.5 * (len(y) * LOG_2PI + logdet + r @ np.linalg.solve(cov, r)))
