"""The marginal likelihood of ``likelihood.py`` for several independent groups at once (the
G-study's dimensions), each with its own σ's, in one vectorised graph.

Fitting twelve CLASS dimensions as twelve copies of the per-dimension graph made compile time
grow with the number of dimensions (≈ 13 s each); stacking keeps one graph whatever their
number. Cells (lessons) and every nested level are indexed per (group, node); σ's are vectors
over groups and are expanded to the nodes. Tested equal to the per-group sum of
``gaussian_marginal_logp``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .recursion import LOG_2PI, nested_logp


@dataclass
class StackedStats:
    n_groups: int
    n_design: int  # design cells over all groups
    cell_group: np.ndarray  # group of each cell
    cell_n: np.ndarray
    cell_sum: np.ndarray
    pair_cell: np.ndarray  # (cell, design) pairs with their counts
    pair_design: np.ndarray
    pair_n: np.ndarray
    design_n: np.ndarray
    design_sum: np.ndarray
    group_n: np.ndarray  # ratings per group
    group_cells: np.ndarray  # cells per group
    group_sum_sq: np.ndarray
    group_log_n: np.ndarray  # Σ log n_c over the group's cells
    parents: list[tuple[str, np.ndarray, np.ndarray]]  # level, parent of each child, group

    @classmethod
    def build(cls, y: np.ndarray, group: np.ndarray, design: np.ndarray, n_design: int,
              cell_key: np.ndarray, levels: list[tuple[str, np.ndarray]], n_groups: int
              ) -> StackedStats:
        """``cell_key``: the cell of each rating within its group (e.g. lesson code);
        ``levels``: (name, parent code of each child code) shared by all groups."""
        n_keys = int(cell_key.max()) + 1
        gkey = group.astype(np.int64) * n_keys + cell_key
        keys, cell = np.unique(gkey, return_inverse=True)
        n_cells = len(keys)
        cell_group, cell_child = keys // n_keys, keys % n_keys
        cell_n = np.bincount(cell, minlength=n_cells).astype(float)
        pair, pair_n = np.unique(cell.astype(np.int64) * n_design + design, return_counts=True)
        parents = []
        child_group, child_code = cell_group, cell_child
        for name, parent_of in levels:
            n_par = int(parent_of.max()) + 1
            pk = child_group * n_par + parent_of[child_code]
            pkeys, pidx = np.unique(pk, return_inverse=True)
            parents.append((name, pidx, pkeys // n_par))
            child_group, child_code = pkeys // n_par, pkeys % n_par
        return cls(
            n_groups=n_groups, n_design=n_design, cell_group=cell_group, cell_n=cell_n,
            cell_sum=np.bincount(cell, weights=y, minlength=n_cells),
            pair_cell=pair // n_design, pair_design=pair % n_design, pair_n=pair_n.astype(float),
            design_n=np.bincount(design, minlength=n_design).astype(float),
            design_sum=np.bincount(design, weights=y, minlength=n_design),
            group_n=np.bincount(group, minlength=n_groups).astype(float),
            group_cells=np.bincount(cell_group, minlength=n_groups).astype(float),
            group_sum_sq=np.bincount(group, weights=y * y, minlength=n_groups),
            group_log_n=np.bincount(cell_group, weights=np.log(cell_n), minlength=n_groups),
            parents=parents)


def stacked_marginal_logp(st: StackedStats, f, design_group: np.ndarray, s2_cell, s2_resid,
                          s2_levels: dict, xp, segsum: Callable):
    """Σ over groups of log p(y_g | f, σ_g) with cells and every nested level integrated out.
    ``f``: mean of each design cell; ``s2_cell``, ``s2_resid``, ``s2_levels[name]``: vectors
    over groups."""
    n_cells = len(st.cell_n)
    g = segsum(st.pair_n * f[st.pair_design], st.pair_cell, n_cells)
    resid = st.cell_sum - g
    ssw = (st.group_sum_sq
           - segsum(f * st.design_sum, design_group, st.n_groups) * 2
           + segsum(st.design_n * f**2, design_group, st.n_groups)
           - segsum(resid**2 / st.cell_n, st.cell_group, st.n_groups))
    level1 = xp.sum(-0.5 * (st.group_n - st.group_cells) * (LOG_2PI + xp.log(s2_resid))
                    - 0.5 * st.group_log_n - ssw / (2 * s2_resid))
    tau2 = s2_cell[st.cell_group] + s2_resid[st.cell_group] / st.cell_n
    parents = [(name, idx) for name, idx, _ in st.parents]
    sigma2 = {name: s2_levels[name][grp] for name, _, grp in st.parents}
    return level1 + nested_logp(resid / st.cell_n, tau2, parents, sigma2, xp, segsum)


def stacked_prior_logp(b, cell_group: np.ndarray, st_parents, s2_cell, s2_levels: dict, xp,
                       segsum: Callable):
    """log p(b) for explicit cell effects (Student-t model): Gaussian cells under the nested
    levels, per group σ's."""
    parents = [(name, idx) for name, idx, _ in st_parents]
    sigma2 = {name: s2_levels[name][grp] for name, _, grp in st_parents}
    return nested_logp(b, s2_cell[cell_group], parents, sigma2, xp, segsum)
