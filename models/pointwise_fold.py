"""The per-top-node likelihood folded into patterns, so a draw costs O(patterns + top nodes ×
(patterns + design cells) + first mixed level × patterns), not O(leaf × design pairs).

A node enters the likelihood through its pattern (its design cells and counts, the variance
columns of its precision, and for nodes above the leaves how many children of which precision
class it holds) and its own sums. Going up from the leaves, every level whose nodes (a) hold
children of one precision class and (b) carry one offset composition is folded: with equal
child precisions the integration of a node's children is
    Σ_i [½ log π − ½ π m_i²] − ½ (k−1) log 2π − ½ log Λ + ½ Λ m̄²,   Λ = k π,
and m_i = (S_i − G_i)/n_i, m̄ = (S − G)/n need only the per-(top, pattern) N, Σ S, Σ S² of
the children and of the parents (an offset shared by a node's children cancels there). The
leaves' own terms need (top, leaf pattern) N, Σ S, Σ S², Σ y² and (top, design) Σ y. Above the
highest folded level ℓ* the offsets enter: (top, pattern, composition) rows for the ℓ* nodes'
own terms, (parent, pattern, composition) rows for their integration into the first level
whose nodes mix compositions or precisions, and from there ``climb`` node by node. At
reference size (leaves → lineage → unit × task → unit …) ℓ* is the unit × task cells, and a
draw reads ≈ 183,000 table rows instead of 1.1 million pairs (369,600 leaves).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

LOG_2PI = float(np.log(2.0 * np.pi))


@dataclass
class FoldedLeaves:
    star: int  # ℓ*: the highest folded level (0: the leaves only)
    pat: tuple  # start, design, cnt, n, level, col, e, kids, child (all levels, by level)
    w_rows: tuple  # (top, leaf pattern, N, Σ S, Σ S², Σ y²)
    l_rows: tuple  # (top, pattern, level, N, Σ S, Σ S²), levels 0..ℓ*
    j_rows: tuple  # (top, ℓ* pattern, composition, N, Σ S, Σ S²)
    r2: tuple  # (top, design, residual column, Σ y)
    r3: tuple  # (parent, ℓ* pattern, composition, count, Σ S)
    top_const: np.ndarray  # (tops,)
    top_at: int  # where the parents of ℓ* nodes start in level_top
    lidx_at: int  # … and in node_lidx

    @property
    def rows(self) -> int:
        return len(self.pat[1]) + sum(len(r[0]) for r in (
            self.w_rows, self.l_rows, self.j_rows, self.r2, self.r3))

    @classmethod
    def build(cls, leaves, cidx: np.ndarray, eidx: np.ndarray, comp: np.ndarray,
              node_lidx: np.ndarray, max_cells: int = 50_000_000) -> FoldedLeaves | None:
        """Fold ``leaves`` (a ``CellLeaves``) given each leaf's variance columns ``cidx``,
        ``eidx``, offset composition ``comp`` and each parent node's level-variance column
        ``node_lidx`` (every level's, concatenated); None without a level above the leaves or
        when a padded pattern table would exceed ``max_cells``."""
        if not leaves.parents:
            return None
        C, top = len(leaves.cell_n), leaves.cell_top
        ups = [np.asarray(i, dtype=np.int64) for _, i in leaves.parents]
        sizes = [C] + [int(u.max()) + 1 for u in ups]
        # Level by level: each leaf's node, the nodes' sums, classes and compositions.
        anc, cls_ = [np.arange(C)], [_classes(np.column_stack([leaves.cell_n, cidx, eidx]))]
        lid_at = 0
        star = 0
        for lev in range(1, len(sizes) - 1):  # the top level stays above ℓ*
            up, n_nodes = ups[lev - 1], sizes[lev]
            child = cls_[-1]
            lo = np.full(n_nodes, np.iinfo(np.int64).max)
            hi = np.full(n_nodes, -1)
            np.minimum.at(lo, up, child)
            np.maximum.at(hi, up, child)
            a = up[anc[-1]]
            clo = np.full(n_nodes, np.iinfo(np.int64).max)
            chi = np.full(n_nodes, -1)
            np.minimum.at(clo, a, comp)
            np.maximum.at(chi, a, comp)
            if np.any(lo != hi) or np.any(clo != chi):
                break
            kids = np.bincount(up, minlength=n_nodes)
            lcol = node_lidx[lid_at:lid_at + n_nodes]
            cls_.append(_classes(np.column_stack([kids, lo, lcol])))
            anc.append(a)
            lid_at += n_nodes
            star = lev
        D = int(leaves.pair_design.max()) + 1
        E = int(eidx.max()) + 1
        J = int(comp.max()) + 1
        pc = leaves.pair_cell
        pats, node_pat, offs = [], [], [0]
        for lev in range(star + 1):
            a = anc[lev]
            key = a[pc] * D + leaves.pair_design
            u, inv = np.unique(key, return_inverse=True)
            cnt = np.bincount(inv, weights=leaves.pair_n)
            node, design = u // D, u % D
            start = np.searchsorted(node, np.arange(sizes[lev] + 1))
            width = int(np.diff(start).max())
            if sizes[lev] * (width + 1) > max_cells:
                return None
            pn = cnt.astype(np.int64)
            code = design * (int(pn.max()) + 1) + pn
            table = np.full((sizes[lev], width + 1), -1, dtype=np.int64)
            table[node, np.arange(len(code)) - start[node]] = code
            table[:, width] = cls_[lev]
            first, local = np.unique(table, axis=0, return_index=True, return_inverse=True)[1:]
            take = np.concatenate([np.arange(start[x], start[x + 1]) for x in first])
            n_node = np.bincount(a, weights=leaves.cell_n, minlength=sizes[lev])
            pats.append((np.diff(start)[first], design[take], cnt[take], n_node[first], first))
            node_pat.append(local.ravel() + offs[-1])
            offs.append(offs[-1] + len(first))
        P = offs[-1]
        lens = np.concatenate([p[0] for p in pats])
        pat = [np.r_[0, np.cumsum(lens)].astype(np.int64),
               np.concatenate([p[1] for p in pats]).astype(np.int64),
               np.concatenate([p[2] for p in pats]).astype(float),
               np.concatenate([p[3] for p in pats]).astype(float),
               np.repeat(np.arange(star + 1), np.diff(offs)).astype(np.int64),
               np.zeros(P, dtype=np.int64), np.zeros(P, dtype=np.int64),
               np.zeros(P), np.zeros(P, dtype=np.int64)]
        lid_at = 0
        for lev in range(star + 1):
            first = pats[lev][4]
            sl = slice(offs[lev], offs[lev + 1])
            if lev == 0:
                pat[5][sl], pat[6][sl] = np.asarray(cidx)[first], np.asarray(eidx)[first]
                continue
            up = ups[lev - 1]
            kids = np.bincount(up, minlength=sizes[lev])
            one_child = np.zeros(sizes[lev], dtype=np.int64)
            one_child[up] = np.arange(len(up))
            pat[5][sl] = node_lidx[lid_at + first]
            pat[7][sl] = kids[first]
            pat[8][sl] = node_pat[lev - 1][one_child[first]]
            lid_at += sizes[lev]

        def node_top(lev: int) -> np.ndarray:
            """The top node of every node of folded level ``lev``."""
            out = np.zeros(sizes[lev], dtype=np.int64)
            out[anc[lev]] = top
            return out

        def sums(keys: np.ndarray, s: np.ndarray, extra=()) -> tuple:
            u, inv = np.unique(keys, return_inverse=True)
            out = [np.bincount(inv).astype(float), np.bincount(inv, weights=s),
                   np.bincount(inv, weights=s * s), *(np.bincount(inv, weights=x)
                                                      for x in extra)]
            return u, out

        S0 = leaves.cell_sum
        u, (N, A, Q, W) = sums(top * P + node_pat[0], S0, (leaves.cell_sq,))
        w_rows = (u // P, u % P, N, A, Q, W)
        l_parts = []
        for lev in range(star + 1):
            S = np.bincount(anc[lev], weights=S0, minlength=sizes[lev])
            u, (N, A, Q) = sums(node_top(lev) * P + node_pat[lev], S)
            l_parts.append((u // P, u % P, np.full(len(u), lev), N, A, Q))
        l_rows = tuple(np.concatenate([p[i] for p in l_parts]) for i in range(6))
        c_node = np.zeros(sizes[star], dtype=np.int64)
        c_node[anc[star]] = comp
        S = np.bincount(anc[star], weights=S0, minlength=sizes[star])
        k_star = node_pat[star]
        u, (N, A, Q) = sums((node_top(star) * P + k_star) * J + c_node, S)
        j_rows = (u // J // P, u // J % P, u % J, N, A, Q)
        key2 = (top[pc] * D + leaves.pair_design) * E + eidx[pc]
        u2, i2 = np.unique(key2, return_inverse=True)
        r2 = (u2 // E // D, u2 // E % D, u2 % E, np.bincount(i2, weights=leaves.pair_sum))
        parent = ups[star]
        u, (Cn, T, _) = sums((parent * P + k_star) * J + c_node, S)
        r3 = (u // J // P, u // J % P, u % J, Cn, T)
        n_top = leaves.n_top
        n_leaf = leaves.cell_n
        top_const = np.bincount(top, weights=-0.5 * ((n_leaf - 1.0) * LOG_2PI + np.log(n_leaf)),
                                minlength=n_top)
        for lev in range(1, star + 2):  # every integration: −½ (k − 1) log 2π per parent
            up = ups[lev - 1]
            kids = np.bincount(up, minlength=sizes[lev]).astype(float)
            t_par = np.zeros(sizes[lev], dtype=np.int64)
            t_par[up] = node_top(lev - 1)
            top_const += np.bincount(t_par, weights=-0.5 * (kids - 1.0) * LOG_2PI,
                                     minlength=n_top)
        return cls(star=star, pat=tuple(pat), w_rows=_ints(w_rows, 2), l_rows=_ints(l_rows, 3),
                   j_rows=_ints(j_rows, 3), r2=_ints(r2, 3), r3=_ints(r3, 3),
                   top_const=top_const, top_at=int(sum(sizes[:star + 1])),
                   lidx_at=int(sum(sizes[1:star + 1])))


def _classes(table: np.ndarray) -> np.ndarray:
    return np.unique(np.asarray(table, dtype=float), axis=0, return_inverse=True)[1].ravel()


def _ints(rows: tuple, n: int) -> tuple:
    return tuple(np.asarray(r, dtype=np.int64) if i < n else np.asarray(r, dtype=float)
                 for i, r in enumerate(rows))
