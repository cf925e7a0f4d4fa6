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
from .patterns import PatternTable
from .recursion import LOG_2PI, batched_ops, nested_logp, np_segment_sum


@dataclass
class SufficientStats:
    """One pass over the ratings; nothing below needs them again.

    The recursion's lowest nodes are *cells* (unit×task); ``parents`` lists the levels above.
    Generalisations of LIKELIHOOD.md, all exact: the residual variance may differ between
    *groups* of design cells (tasks); each cell may carry a known linear *offset* of extra
    effects (the reference experts' severities: its weight row times the effect vector); and
    the ratings of a cell may sit in nested *sub-cells* with effects of their own (an LLM's
    ratings of a cell inside its family's: llm×unit×task inside lineage). When at every sub-level
    the children of a node hold equally many ratings, the sub-levels integrate out in closed form
    at pattern cost (``subs``); otherwise pass the finest nodes as the cells and the levels
    above them as parents.
    """

    n_design: int
    design_n: np.ndarray  # ratings per design cell (llm, prompt, task)
    design_sum: np.ndarray  # Σ y per design cell
    design_group: np.ndarray  # residual group (task) of each design cell
    n_groups: int
    group_sum_sq: np.ndarray  # Σ y² per group
    group_df: np.ndarray  # Σ (n − 1) over the group's leaves (the finest nodes)
    sum_log_n: float  # Σ log n over the leaves
    tables: list[PatternTable]  # the finest nodes first, the cells last
    ks: list[np.ndarray]  # per table: (patterns, level) children per node at each sub-level
    parents: list[tuple[str, np.ndarray]]  # level name, parent index of each child node
    cell_comp: np.ndarray | None = None  # each cell's offset composition (row of comp_weights)
    comp_weights: np.ndarray | None = None  # (compositions, offsets): distinct weight rows
    grouped: GroupedCells | None = None  # the cell level folded into patterns (grouped.py)

    @property
    def sum_sq(self) -> float:
        return float(self.group_sum_sq.sum())

    @property
    def leaf(self) -> PatternTable:
        return self.tables[0]

    @property
    def cell(self) -> PatternTable:
        return self.tables[-1]

    @property
    def cell_n(self) -> np.ndarray:
        return self.cell.node_n

    @classmethod
    def from_arrays(cls, y: np.ndarray, design: np.ndarray, n_design: int, cell: np.ndarray,
                    parents: list[tuple[str, np.ndarray]], grouped: bool | None = None,
                    design_group: np.ndarray | None = None,
                    cell_offset: np.ndarray | None = None,
                    subs: list[np.ndarray] | None = None) -> SufficientStats:
        """Reduce the ratings once. ``cell``: each rating's cell; ``design_group``: the
        residual group of each design cell (default: one group); ``cell_offset``: (cells ×
        offsets) weights of each cell's offset; ``subs``: each rating's node at each sub-level,
        finest first, nested in one another and in the cells, equal sizes among siblings.
        ``grouped``: None picks the faster form (grouped.py)."""
        design_group = (np.zeros(n_design, dtype=np.int64) if design_group is None
                        else np.asarray(design_group, dtype=np.int64))
        n_groups = int(design_group.max()) + 1
        levels = [*(subs or []), cell]
        tables, ks = [], []
        kvec = None  # children per node at each sub-level, for the current level's nodes
        for i, node in enumerate(levels):
            node_cell = np.zeros(int(node.max()) + 1, dtype=np.int64)
            node_cell[node] = cell
            key = None
            if i > 0:
                child = levels[i - 1]
                up = np.zeros(int(child.max()) + 1, dtype=np.int64)
                up[child] = node
                k = np.bincount(up, minlength=len(node_cell))
                sizes = np.bincount(child)
                if np.any(sizes * k[up] != np.bincount(node)[up]):
                    raise ValueError("sub-cells of a node must hold equally many ratings")
                first = np.zeros(len(node_cell), dtype=np.int64)
                first[up[::-1]] = np.arange(len(up))[::-1]
                kvec = np.column_stack([kvec[first], k]) if kvec is not None else k[:, None]
                _, key = np.unique(kvec, axis=0, return_inverse=True)
            table = PatternTable.build(y, design, n_design, node, design_group,
                                       node_key=None if key is None else key.ravel())
            tables.append(table)
            firsts = np.unique(table.node_pattern, return_index=True)[1]
            ks.append(np.zeros((len(firsts), 0)) if kvec is None else
                      kvec[firsts].astype(float))
        leaf = tables[0]
        stats = cls(
            n_design=n_design, design_n=np.bincount(design, minlength=n_design).astype(float),
            design_sum=np.bincount(design, weights=y, minlength=n_design),
            design_group=design_group, n_groups=n_groups,
            group_sum_sq=np.bincount(design_group[design], weights=y * y, minlength=n_groups),
            group_df=np.bincount(leaf.node_group, weights=leaf.node_n - 1, minlength=n_groups),
            sum_log_n=float(np.sum(np.log(leaf.node_n))), tables=tables, ks=ks,
            parents=parents)
        if cell_offset is not None:  # constant inside a cell: only the cells' means need it
            stats.comp_weights, comp = np.unique(np.asarray(cell_offset), axis=0,
                                                 return_inverse=True)
            stats.cell_comp = comp.ravel()
        top = tables[-1]
        key = (top.pat_n * n_groups + top.pattern_group)[:, None]
        _, value_key = np.unique(np.column_stack([key, ks[-1]]), axis=0, return_inverse=True)
        stats.grouped = GroupedCells.build(parents, top, value_key.ravel(), stats.cell_comp,
                                           force=grouped)
        return stats


def e1_stats(spec, data, grouped: bool | None = None) -> SufficientStats:
    """E1's sufficient statistics: the spec's leaf chain, per-task residual groups, the
    reference's offsets per cell (``grouped`` as in ``from_arrays``)."""
    chain, weights = spec.chain, spec.reference_weights
    node_cell = np.zeros(int(chain.cell.max()) + 1, dtype=np.int64)
    node_cell[chain.cell] = data.cell
    return SufficientStats.from_arrays(
        data.error, spec.design, spec.n_design, chain.cell, chain.parents, grouped=grouped,
        design_group=spec.design_task if len(spec.coords["task"]) > 1 else None,
        cell_offset=None if weights is None else weights[node_cell], subs=chain.subs)


def _level1(stats: SufficientStats, f, s2e, one: bool, xp, segsum: Callable):
    """The leaves' within sums of squares (blind to leaf-constant offsets: design part only)."""
    g = stats.leaf.design_means(f, xp)
    terms = stats.leaf.resid_terms(g, 1.0 / stats.leaf.pat_n)
    if one:
        ssw = (stats.sum_sq - 2 * xp.dot(f, stats.design_sum) + xp.dot(stats.design_n, f**2)
               - xp.sum(terms))
        return (-0.5 * float(stats.group_df[0]) * (LOG_2PI + xp.log(s2e))
                - 0.5 * stats.sum_log_n - ssw / (2 * s2e))
    ssw = (stats.group_sum_sq
           - 2 * segsum(f * stats.design_sum, stats.design_group, stats.n_groups)
           + segsum(stats.design_n * f**2, stats.design_group, stats.n_groups)
           - segsum(terms, stats.leaf.pattern_group, stats.n_groups))
    return (xp.sum(-0.5 * stats.group_df * (LOG_2PI + xp.log(s2e)) - ssw / (2 * s2e))
            - 0.5 * stats.sum_log_n)


def _noise(table: PatternTable, kvec: np.ndarray, depth: int, s2e, one: bool, sigma2_subs):
    """Per pattern of ``table``: the variance, given the effect of its nodes' ``depth``-level
    ancestor-or-self, of the mean residual of one node at that depth. (Equal sizes make it a
    function of the pattern.) depth 0: a leaf's σ²_e / n."""
    noise = (s2e if one else s2e[table.pattern_group]) / (table.pat_n / np.prod(kvec, axis=1))
    for j in range(depth):
        noise = (sigma2_subs[j] + noise) / kvec[:, j]
    return noise


def _sub_levels(stats: SufficientStats, f, s2e, one: bool, sigma2_subs: list, xp):
    """Σ over every sub-level's parents of log R, the children integrated in closed form."""
    total = 0.0
    for lev in range(1, len(stats.tables)):
        child, parent = stats.tables[lev - 1], stats.tables[lev]
        kc, kp = stats.ks[lev - 1], stats.ks[lev]
        k = kp[:, lev - 1]
        lam_child = 1.0 / (sigma2_subs[lev - 1] + _noise(child, kc, lev - 1, s2e, one,
                                                            sigma2_subs))
        # The parent's children, seen from the parent's pattern: size n / k, same structure.
        lam_parent = 1.0 / (sigma2_subs[lev - 1] + _noise(parent, kp, lev - 1, s2e, one,
                                                          sigma2_subs))
        n_child = parent.pat_n / k
        within = (xp.sum(child.resid_terms(child.design_means(f, xp),
                                           lam_child / child.pat_n**2))
                  - xp.sum(parent.resid_terms(parent.design_means(f, xp),
                                              lam_parent / (k * n_child**2))))
        total = total + (xp.sum(parent.pat_count * (-0.5 * (k - 1) * LOG_2PI
                                                    + 0.5 * (k - 1) * xp.log(lam_parent)
                                                    - 0.5 * np.log(k)))
                         - 0.5 * within)
    return total


def gaussian_marginal_logp(stats: SufficientStats, f, sigma2_cell, sigma2_resid,
                           sigma2: dict, xp=np, segsum: Callable = np_segment_sum, offset=None,
                           sigma2_subs: list | None = None):
    """log p(errors | design-cell means f, σ's) with every nested effect integrated out.

    ``sigma2_resid``: a scalar, or one residual variance per group; ``offset``: the values of
    the offset effects (e.g. expert severities), or None; ``sigma2_subs``: the variance of each
    sub-level's effects, finest first (with ``SufficientStats(subs=…)``).
    """
    one = stats.n_groups == 1
    s2e = sigma2_resid
    total = _level1(stats, f, s2e, one, xp, segsum)
    cell = stats.cell
    depth = len(stats.tables) - 1
    if depth:
        total = total + _sub_levels(stats, f, s2e, one, sigma2_subs, xp)
    noise = _noise(cell, stats.ks[-1], depth, s2e, one, sigma2_subs)
    g = cell.design_means(f, xp)
    o = (xp.dot(stats.comp_weights, offset)
         if stats.comp_weights is not None and offset is not None else None)
    if stats.grouped is not None:
        return total + stats.grouped.logp(stats.parents, g, sigma2_cell, noise, sigma2, xp,
                                          segsum, o)
    p = cell.node_pattern
    m = (cell.node_sum - g[p]) / cell.node_n
    if o is not None:
        m = m - o[stats.cell_comp]
    return total + nested_logp(m, sigma2_cell + noise[p], stats.parents, sigma2, xp, segsum)


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

    def logp_compiled(self, f: np.ndarray, s2_cell, s2_res, s2_levels: dict,
                      offset: np.ndarray | None = None, form: str = "auto") -> np.ndarray:
        """``logp`` by the compiled kernels (pointwise_kernels.py): one pass per draw, draws in
        parallel, no temporaries of the data's size. Shapes as ``logp``. ``form``: "folded"
        (the leaves folded into patterns, pointwise_fold.py), "leaves" (leaf by leaf), or
        "auto": folded when its tables hold fewer rows than the leaves and their pairs."""
        from .pointwise_fold import FoldedLeaves
        from .pointwise_kernels import folded_logp, leaves_logp

        n, C = f.shape[0], len(self.cell_n)

        def columns(v, per_group: np.ndarray | None, size: int):
            """(draws, k) values and each node's column: one for all, per group, per node."""
            v = np.asarray(v, dtype=float).reshape(n, -1)
            if v.shape[1] == 1:
                return v, np.zeros(size, dtype=np.int64)
            if v.shape[1] == size:
                return v, np.arange(size, dtype=np.int64)
            return v, per_group.astype(np.int64)

        s2c, cidx = columns(s2_cell, None, C)
        s2e, eidx = columns(s2_res, self.cell_group, C)
        if offset is not None and self.cell_offset is not None:
            comp_w, comp = np.unique(self.cell_offset, axis=0, return_inverse=True)
            offset = np.asarray(offset, dtype=float).reshape(n, -1)
        else:
            comp_w, comp, offset = np.zeros((0, 0)), np.zeros(C, dtype=np.int64), \
                np.zeros((n, 0))
        idx = [np.asarray(i, dtype=np.int64) for _, i in self.parents]
        tops, node_top = [self.cell_top], self.cell_top
        lev_cols, lev_idx, at = [], [], 0
        for (name, _), i in zip(self.parents, idx, strict=True):
            up = np.zeros(int(i.max()) + 1, dtype=np.int64)
            up[i] = node_top
            tops.append(up)
            node_top = up
            v, j = columns(s2_levels[name], None, len(up))
            lev_cols.append(v)
            lev_idx.append(j + at)
            at += v.shape[1]
        starts = np.cumsum([0, *[len(i) for i in idx]]).astype(np.int64)
        levels = (np.concatenate([np.zeros(0, np.int64), *idx]), starts, np.concatenate(tops),
                  np.concatenate([np.zeros(0, np.int64), *lev_idx]), self.n_top)
        draws = (np.ascontiguousarray(f, dtype=float), np.ascontiguousarray(s2c),
                 np.ascontiguousarray(s2e),
                 np.ascontiguousarray(np.column_stack(lev_cols) if lev_cols
                                      else np.zeros((n, 0))),
                 np.ascontiguousarray(offset))
        comp = comp.ravel().astype(np.int64)
        comp_w = np.ascontiguousarray(comp_w, dtype=float)
        fold = None if form == "leaves" else FoldedLeaves.build(self, cidx, eidx, comp,
                                                                levels[3])
        if form == "folded" and fold is None:
            raise ValueError("these leaves cannot be folded (no level above them)")
        if fold is not None and (form == "folded" or fold.rows < len(self.pair_cell) + C):
            return folded_logp(*fold.pat, *fold.w_rows, *fold.l_rows, *fold.j_rows, *fold.r2,
                               *fold.r3, fold.top_const, fold.star, fold.top_at, fold.lidx_at,
                               comp_w, *levels, *draws)
        return leaves_logp(
            self.cell_n, self.cell_sum, self.cell_sq,
            np.searchsorted(self.pair_cell, np.arange(C + 1)).astype(np.int64),
            self.pair_design.astype(np.int64), self.pair_n, self.pair_sum, cidx, eidx, comp,
            comp_w, *levels, *draws)

    def logp_draws(self, f: np.ndarray, s2_cell, s2_res, s2_levels: dict, posterior,
                   top_name: str, chunk: int = 250, offset: np.ndarray | None = None):
        """``logp`` over all posterior draws (the compiled kernel), as a (chain, draw,
        ``top_name``) DataArray."""
        import xarray as xr

        n_chain, n_draw = posterior.sizes["chain"], posterior.sizes["draw"]
        if not np.ndim(s2_cell):
            s2_cell = np.full((f.shape[0], 1), float(s2_cell))
        ll = self.logp_compiled(f, s2_cell, s2_res, s2_levels, offset).reshape(
            n_chain, n_draw, self.n_top)
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
