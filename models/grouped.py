"""The cell level of the Gaussian marginal likelihood folded into patterns: O(units), not O(cells).

A cell's contribution depends on the parameters only through its pattern k (which design cells it
holds, how often): the pattern fixes n_k, the design-mean total g_k = Σ_d n_kd f_d and the cell
precision λ_k = 1 / (σ²_cell + σ²_resid / n_k). So every sum over cells that the recursion in
``likelihood.py`` needs is a sum over patterns of fixed data totals times parameter terms:

    Σ_c w_k(c) (S_c − g_k(c))²  = Σ_k w_k (Q_k − 2 g_k A_k + N_k g_k²)
    Σ_{c∈u} λ_c m_c             = Σ_v (λ_v / n_v) T_uv − h[up(u)],  h = C (λ g / n)
    Λ_u = Σ_{c∈u} λ_c           = (C λ)[up(u)]

with A_k, Q_k, N_k the sum, sum of squares and number of the cell totals S_c of pattern k, T_uv
the total of unit u's cells of value class v (cells of one size n_v and one residual group, so
one precision λ_v), and C the pattern counts of each distinct *unit pattern* up(u). In a
balanced study (one pattern per task, one unit pattern) the cell level costs
O(tasks × design cells) and the first nested level O(units): the reference preset has 46,200 cells
but 6,600 units. Unbalanced data with many distinct patterns fall back to the per-cell form
(``build`` decides by the size of the folded arrays).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .patterns import PatternTable
from .recursion import LOG_2PI, nested_logp


@dataclass
class GroupedCells:
    pat_n: np.ndarray  # (K,) ratings per cell of each pattern
    pat_cells: np.ndarray  # (K,) N_k: cells with the pattern
    pat_sum: np.ndarray  # (K,) A_k = Σ S_c
    pat_sumsq: np.ndarray  # (K,) Q_k = Σ S_c²
    n_values: np.ndarray  # (V,) cell size of each value class
    pat_value: np.ndarray  # (K,) value class of each pattern
    value_pattern: np.ndarray  # (V,) one pattern of each value class
    unit_totals: np.ndarray  # (U, V) T_uv
    unit_pattern: np.ndarray  # (U,) index of each unit's row in unit_counts
    unit_counts: np.ndarray  # (UP, K) C: cells of each pattern in a unit of that unit pattern
    unit_mult: np.ndarray  # (UP,) units with each unit pattern
    unit_children: np.ndarray  # (U,) cells per unit
    level: str  # name of the first nested level (usually "unit")
    # Offsets (cell-constant, by composition j): (pattern, composition) pair sums, each unit's
    # main composition, and its cells of other compositions as (unit, class, composition, n).
    pair_pattern: np.ndarray | None = None
    pair_comp: np.ndarray | None = None
    pair_count: np.ndarray | None = None
    pair_sum: np.ndarray | None = None
    unit_comp: np.ndarray | None = None
    extra: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None

    @classmethod
    def build(cls, parents: list[tuple[str, np.ndarray]], table: PatternTable,
              value_key: np.ndarray, cell_comp: np.ndarray | None = None,
              force: bool | None = None) -> GroupedCells | None:
        """Fold the cells of ``table`` when that shrinks the work (or when ``force`` says so).
        ``value_key``: per pattern, an integer that fixes its cell precision given the
        parameters (size, residual group, sub-cells): patterns with one key share λ."""
        if not parents or force is False:
            return None
        level, unit_of = parents[0]
        K, n_cells = len(table.pattern_design), len(table.node_pattern)
        U = int(unit_of.max()) + 1
        classes, pat_value = np.unique(value_key, return_inverse=True)
        pat_value = pat_value.ravel()
        V = len(classes)
        # The fold trades scatter-adds over cells for dense products over (units × classes):
        # worth it up to a few times the cells (per-task residuals make one class per task).
        if force is None and (U * V > 4 * n_cells or U * K > 50_000_000):
            return None
        k = table.node_pattern
        counts = np.zeros((U, K))
        np.add.at(counts, (unit_of, k), 1.0)
        unit_counts, unit_pattern = np.unique(counts, axis=0, return_inverse=True)
        if force is None and U * V + unit_counts.size > 4 * n_cells:
            return None
        totals = np.zeros((U, V))
        np.add.at(totals, (unit_of, pat_value[k]), table.node_sum)
        value_pattern = np.zeros(V, dtype=np.int64)
        value_pattern[pat_value] = np.arange(K)
        offsets = {} if cell_comp is None else cls._offset_data(table, unit_of, pat_value,
                                                                cell_comp, U)
        return cls(**offsets,
            pat_n=table.pat_n, pat_cells=table.pat_count, pat_sum=table.pat_sum,
            pat_sumsq=table.pat_sumsq, n_values=table.pat_n[value_pattern],
            pat_value=pat_value, value_pattern=value_pattern, unit_totals=totals,
            unit_pattern=unit_pattern.ravel(), unit_counts=unit_counts,
            unit_mult=np.bincount(unit_pattern.ravel(), minlength=len(unit_counts)).astype(
                np.float64),
            unit_children=np.bincount(unit_of, minlength=U).astype(np.float64), level=level)

    @staticmethod
    def _offset_data(table: PatternTable, unit_of: np.ndarray, pat_value: np.ndarray,
                     cell_comp: np.ndarray, U: int) -> dict:
        k = table.node_pattern
        J = int(cell_comp.max()) + 1
        pairs, pair = np.unique(k * J + cell_comp, return_inverse=True)
        pair = pair.ravel()
        per_unit = np.zeros((U, J))
        np.add.at(per_unit, (unit_of, cell_comp), 1.0)
        main = per_unit.argmax(axis=1)
        other = np.flatnonzero(cell_comp != main[unit_of])
        key, count = np.unique((unit_of[other] * len(pat_value) + pat_value[k[other]]) * J
                               + cell_comp[other], return_counts=True)
        return {"pair_pattern": pairs // J, "pair_comp": pairs % J,
                "pair_count": np.bincount(pair).astype(float),
                "pair_sum": np.bincount(pair, weights=table.node_sum),
                "unit_comp": main,
                "extra": (key // J // len(pat_value), key // J % len(pat_value), key % J,
                          count.astype(float))}

    def resid_sq(self, g, w, xp):
        """Σ_c w_k(c) (S_c − g_k(c))² from the pattern totals."""
        return xp.sum(w * (self.pat_sumsq - 2.0 * g * self.pat_sum + self.pat_cells * g**2))

    def logp(self, parents: list[tuple[str, np.ndarray]], g, sigma2_cell, noise, sigma2: dict,
             xp, segsum: Callable, offset=None):
        """The cell level and the first nested level; the rest goes through ``nested_logp``.
        ``noise``: per pattern, the variance of a cell's mean residual given the cell effect
        (σ²_e / n, plus σ²_sub / k with sub-cells); ``offset``: per composition, the
        cell-constant offset o_j (a cell's mean residual is (S − g)/n − o_j)."""
        lam_k = 1.0 / (sigma2_cell + noise)
        lam_v = lam_k[self.value_pattern]
        h = xp.dot(self.unit_counts, lam_k * g / self.pat_n)
        lam_up = xp.dot(self.unit_counts, lam_k)
        s_lm = xp.dot(self.unit_totals, lam_v / self.n_values) - h[self.unit_pattern]
        lam_u = lam_up[self.unit_pattern]
        quad = self.resid_sq(g, lam_k / self.pat_n**2, xp)
        if offset is not None:
            # Σ_c λ m² and Σ_{c∈u} λ m with m = (S − g)/n − o: pattern × composition sums, the
            # unit's main composition through Λ_u, and its other cells one by one.
            kp, o = self.pair_pattern, offset[self.pair_comp]
            lk = lam_k[kp]
            quad = (quad - 2.0 * xp.sum(lk * o * (self.pair_sum - self.pair_count * g[kp])
                                        / self.pat_n[kp])
                    + xp.sum(lk * self.pair_count * o**2))
            s_lm = s_lm - offset[self.unit_comp] * lam_u
            u, v, j, n = self.extra
            if len(u):
                s_lm = s_lm - segsum(n * lam_v[v] * (offset[j] - offset[self.unit_comp[u]]), u,
                                     len(self.unit_pattern))
        total = (-0.5 * float(np.sum(self.unit_children - 1)) * LOG_2PI
                 + 0.5 * xp.sum(self.pat_cells * xp.log(lam_k))
                 - 0.5 * xp.sum(self.unit_mult * xp.log(lam_up))
                 - 0.5 * (quad - xp.sum(s_lm**2 / lam_u)))
        m_u, s2_u = s_lm / lam_u, sigma2[self.level] + 1.0 / lam_u
        return total + nested_logp(m_u, s2_u, parents[1:], sigma2, xp, segsum)
