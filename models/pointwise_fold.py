"""The per-top-node likelihood's leaves folded into patterns, so a draw costs O(patterns + top
nodes × design cells + first-level parents × patterns), not O(leaf × design pairs).

A leaf enters the likelihood through its pattern k (its design cells and counts, its residual
and cell-variance columns: grouped.py's idea) and its own sums S (Σ y), W (Σ y²) and Y_d (Σ y
per design cell). Summed over the leaves of one top node t, pattern k and offset composition j,
the leaves' own terms need only N, Σ S, Σ S², Σ W of those leaves; their cross term Σ_d f_d Y_d
only (top, design) totals; and the first integration (leaves into their parents p) only each
(p, k, j)'s count and Σ S. So every data sum is taken once here, and the kernel
(``pointwise_kernels.folded_logp``) never reads a leaf. At reference size (46,200 cells,
1.1 million (cell, design) pairs) the folded tables hold ≈ 100,000 rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

LOG_2PI = float(np.log(2.0 * np.pi))


@dataclass
class FoldedLeaves:
    pat_start: np.ndarray  # (K + 1,) each pattern's first (design, count) pair
    pat_design: np.ndarray
    pat_cnt: np.ndarray
    pat_n: np.ndarray  # (K,) ratings per leaf
    pat_c: np.ndarray  # (K,) the leaf-variance column
    pat_e: np.ndarray  # (K,) the residual column
    r1: tuple  # (top, pattern, composition, N, Σ S, Σ S², Σ W)
    r2: tuple  # (top, design, residual column, Σ y)
    r3: tuple  # (parent, pattern, composition, count, Σ S)
    top_const: np.ndarray  # (tops,)

    @property
    def rows(self) -> int:
        return len(self.pat_design) + sum(len(r[0]) for r in (self.r1, self.r2, self.r3))

    @classmethod
    def build(cls, leaves, cidx: np.ndarray, eidx: np.ndarray, comp: np.ndarray,
              max_cells: int = 50_000_000) -> FoldedLeaves | None:
        """Fold ``leaves`` (a ``CellLeaves``) given each leaf's variance columns ``cidx``,
        ``eidx`` and offset composition ``comp``; None without a level above the leaves or
        when the padded pattern table would exceed ``max_cells``."""
        if not leaves.parents:
            return None
        C = len(leaves.cell_n)
        start = np.searchsorted(leaves.pair_cell, np.arange(C + 1))
        width = int(np.diff(start).max())
        if C * (width + 2) > max_cells:
            return None
        pn = leaves.pair_n.astype(np.int64)
        code = leaves.pair_design.astype(np.int64) * (int(pn.max()) + 1) + pn
        table = np.full((C, width + 2), -1, dtype=np.int64)
        table[leaves.pair_cell, np.arange(len(code)) - start[leaves.pair_cell]] = code
        table[:, width] = cidx
        table[:, width + 1] = eidx
        first, leaf_pat = np.unique(table, axis=0, return_index=True, return_inverse=True)[1:]
        leaf_pat = leaf_pat.ravel()
        K = len(first)
        lens = start[first + 1] - start[first]
        pat_start = np.r_[0, np.cumsum(lens)].astype(np.int64)
        take = np.concatenate([np.arange(start[c], start[c + 1]) for c in first])
        pat_n = leaves.cell_n[first]

        top = leaves.cell_top
        J = int(comp.max()) + 1
        key1 = (top * K + leaf_pat) * J + comp
        u1, i1 = np.unique(key1, return_inverse=True)
        sq = np.bincount(i1, weights=leaves.cell_sq)
        N = np.bincount(i1).astype(float)
        r1 = ((u1 // J // K).astype(np.int64), (u1 // J % K).astype(np.int64),
              (u1 % J).astype(np.int64), N, np.bincount(i1, weights=leaves.cell_sum),
              np.bincount(i1, weights=leaves.cell_sum**2), sq)

        D = int(leaves.pair_design.max()) + 1
        E = int(eidx.max()) + 1
        pc = leaves.pair_cell
        key2 = (top[pc] * D + leaves.pair_design) * E + eidx[pc]
        u2, i2 = np.unique(key2, return_inverse=True)
        r2 = ((u2 // E // D).astype(np.int64), (u2 // E % D).astype(np.int64),
              (u2 % E).astype(np.int64), np.bincount(i2, weights=leaves.pair_sum))

        parent = np.asarray(leaves.parents[0][1], dtype=np.int64)
        key3 = (parent * K + leaf_pat) * J + comp
        u3, i3 = np.unique(key3, return_inverse=True)
        r3 = ((u3 // J // K).astype(np.int64), (u3 // J % K).astype(np.int64),
              (u3 % J).astype(np.int64), np.bincount(i3).astype(float),
              np.bincount(i3, weights=leaves.cell_sum))

        n_top = leaves.n_top
        n = pat_n[r1[1]]
        top_const = np.bincount(r1[0], weights=-0.5 * N * ((n - 1.0) * LOG_2PI + np.log(n)),
                                minlength=n_top)
        kids = np.bincount(parent).astype(float)
        par_top = np.zeros(len(kids), dtype=np.int64)
        par_top[parent] = top
        top_const += np.bincount(par_top, weights=-0.5 * (kids - 1.0) * LOG_2PI,
                                 minlength=n_top)
        return cls(pat_start=pat_start, pat_design=leaves.pair_design[take].astype(np.int64),
                   pat_cnt=leaves.pair_n[take], pat_n=pat_n,
                   pat_c=np.asarray(cidx)[first].astype(np.int64),
                   pat_e=np.asarray(eidx)[first].astype(np.int64),
                   r1=r1, r2=r2, r3=r3, top_const=top_const)
