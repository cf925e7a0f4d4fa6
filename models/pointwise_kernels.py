"""The Gaussian likelihood split by top-level node, for every posterior draw, in one compiled
pass (what power-scaling and LOO-style checks need).

``CellLeaves.logp`` (likelihood.py) computes the same in numpy with sparse products per chunk
of draws: at reference size (369,600 leaves, 4,000 draws) that took ≈ 3 minutes of
``misalign sensitivity``. Here each draw is one loop over the leaves and the levels above them,
draws in parallel; ``tests/test_fast_path.py`` checks it against ``CellLeaves.logp``.
"""

from __future__ import annotations

import math

import numpy as np
from numba import prange

from .kernel_cache import kernel

LOG_2PI = math.log(2.0 * math.pi)


@kernel(parallel=True)
def leaves_logp(cell_n, cell_sum, cell_sq, pair_start, pair_design, pair_n, pair_sum,
                cell_cidx, cell_eidx, cell_comp, comp_w, level_idx, level_start, level_top,
                node_lidx, n_top, f, s2cell, s2e, s2lev, offset):
    """(draws, top nodes) log likelihoods.

    Leaves' pairs are sorted by leaf (``pair_start``: first pair of each leaf, length
    leaves + 1); ``level_idx`` concatenates each level's parent index of its children,
    ``level_start`` where each level starts; ``level_top`` concatenates the top node of every
    node at each level, the leaves first (so it has one more block than ``level_idx``).
    The variances are columns of ``s2cell``, ``s2e`` (draws, ·) picked for each leaf by
    ``cell_cidx``, ``cell_eidx``, and of ``s2lev`` picked for each parent node (every level's,
    concatenated) by ``node_lidx``: one column for all, one per group or one per node.
    ``f`` (draws, design), ``offset`` (draws, offsets) — or (draws, 0) without offsets."""
    n_draws = f.shape[0]
    C = len(cell_n)
    E = offset.shape[1]
    out = np.zeros((n_draws, n_top))
    for d in prange(n_draws):
        acc = out[d]
        ocomp = np.zeros(max(comp_w.shape[0], 1))
        for j in range(comp_w.shape[0]):
            for e in range(E):
                ocomp[j] += comp_w[j, e] * offset[d, e]
        m = np.empty(C)
        s = np.empty(C)
        for c in range(C):
            g = yf = ff = 0.0
            for q in range(pair_start[c], pair_start[c + 1]):
                fv = f[d, pair_design[q]]
                g += pair_n[q] * fv
                yf += pair_sum[q] * fv
                ff += pair_n[q] * fv * fv
            n = cell_n[c]
            resid = cell_sum[c] - g
            ssw = cell_sq[c] - 2.0 * yf + ff - resid * resid / n
            if E > 0:
                resid -= n * ocomp[cell_comp[c]]
            se = s2e[d, cell_eidx[c]]
            acc[level_top[c]] += (-0.5 * (n - 1.0) * (LOG_2PI + math.log(se))
                                  - 0.5 * math.log(n) - ssw / (2.0 * se))
            m[c] = resid / n
            s[c] = s2cell[d, cell_cidx[c]] + se / n
        climb(acc, m, s, 0, 0, level_idx, level_start, level_top, node_lidx, s2lev[d])
    return out


@kernel
def climb(acc, m, s, first, node_at, level_idx, level_start, level_top, node_lidx, s2lev):
    """From the nodes of level ``first`` (means ``m``, variances ``s``) to the top: each
    level's children integrated into their parents, every term added to its top node's
    ``acc``. ``node_at``: where the parents of level ``first`` start in ``node_lidx``;
    ``s2lev``: this draw's level variances."""
    L = len(level_start) - 1
    top_at = 0  # where level ``first``'s nodes start in level_top
    for lev in range(first):
        top_at += level_start[lev + 1] - level_start[lev]
    size = len(m)
    for lev in range(first, L):
        a, b = level_start[lev], level_start[lev + 1]
        n_par = 0
        for i in range(a, b):
            if level_idx[i] + 1 > n_par:
                n_par = level_idx[i] + 1
        lam_sum = np.zeros(n_par)
        bsum = np.zeros(n_par)
        kids = np.zeros(n_par)
        for i in range(size):
            p = level_idx[a + i]
            lam = 1.0 / s[i]
            lam_sum[p] += lam
            bsum[p] += lam * m[i]
            kids[p] += 1.0
            acc[level_top[top_at + i]] += 0.5 * math.log(lam) - 0.5 * lam * m[i] * m[i]
        top_at += size
        m = np.empty(n_par)
        s = np.empty(n_par)
        for p in range(n_par):
            t = level_top[top_at + p]
            acc[t] += (-0.5 * (kids[p] - 1.0) * LOG_2PI - 0.5 * math.log(lam_sum[p])
                       + 0.5 * bsum[p] * bsum[p] / lam_sum[p])
            m[p] = bsum[p] / lam_sum[p]
            s[p] = s2lev[node_lidx[node_at + p]] + 1.0 / lam_sum[p]
        node_at += n_par
        size = n_par
    for p in range(size):
        acc[level_top[top_at + p]] += -0.5 * (LOG_2PI + math.log(s[p]) + m[p] * m[p] / s[p])


@kernel(parallel=True)
def folded_logp(pat_start, pat_design, pat_cnt, pat_n, pat_c, pat_e,
                r1_top, r1_pat, r1_comp, r1_n, r1_a, r1_q, r1_w,
                r2_top, r2_design, r2_e, r2_y,
                r3_par, r3_pat, r3_comp, r3_c, r3_t,
                top_const, comp_w, level_idx, level_start, level_top, node_lidx, n_top,
                f, s2cell, s2e, s2lev, offset):
    """``leaves_logp`` with the leaves folded into patterns (pointwise_fold.py): per draw,
    each pattern's design total g and Σ n f² once, then (top, pattern, composition) rows for
    the leaves' own terms, (top, design) rows for Σ y f, (parent, pattern, composition) rows
    for the first integration; the levels above as ``climb``. ``top_const``: every top's
    data-only constants."""
    n_draws = f.shape[0]
    K = len(pat_n)
    E = offset.shape[1]
    C = level_start[1] - level_start[0]
    n_par = 0
    for i in range(len(r3_par)):
        if r3_par[i] + 1 > n_par:
            n_par = r3_par[i] + 1
    out = np.zeros((n_draws, n_top))
    for d in prange(n_draws):
        acc = out[d]
        for t in range(n_top):
            acc[t] = top_const[t]
        ocomp = np.zeros(max(comp_w.shape[0], 1))
        for j in range(comp_w.shape[0]):
            for e in range(E):
                ocomp[j] += comp_w[j, e] * offset[d, e]
        g = np.empty(K)
        ff = np.empty(K)
        lam = np.empty(K)
        se = np.empty(K)
        for k in range(K):
            gk = fk = 0.0
            for q in range(pat_start[k], pat_start[k + 1]):
                fv = f[d, pat_design[q]]
                gk += pat_cnt[q] * fv
                fk += pat_cnt[q] * fv * fv
            g[k] = gk
            ff[k] = fk
            se[k] = s2e[d, pat_e[k]]
            lam[k] = 1.0 / (s2cell[d, pat_c[k]] + se[k] / pat_n[k])
        for r in range(len(r1_top)):
            k = r1_pat[r]
            n = pat_n[k]
            N = r1_n[r]
            A = r1_a[r]
            Q = r1_q[r]
            G = g[k] + n * ocomp[r1_comp[r]]
            resid_sq = Q - 2.0 * g[k] * A + N * g[k] * g[k]
            acc[r1_top[r]] += (-0.5 * N * (n - 1.0) * math.log(se[k])
                               - (r1_w[r] + N * ff[k] - resid_sq / n) / (2.0 * se[k])
                               + 0.5 * N * math.log(lam[k])
                               - 0.5 * lam[k] * (Q - 2.0 * G * A + N * G * G) / (n * n))
        for r in range(len(r2_top)):
            acc[r2_top[r]] += f[d, r2_design[r]] * r2_y[r] / s2e[d, r2_e[r]]
        lam_sum = np.zeros(n_par)
        bsum = np.zeros(n_par)
        for r in range(len(r3_par)):
            k = r3_pat[r]
            n = pat_n[k]
            p = r3_par[r]
            G = g[k] + n * ocomp[r3_comp[r]]
            lam_sum[p] += r3_c[r] * lam[k]
            bsum[p] += lam[k] * (r3_t[r] - r3_c[r] * G) / n
        m = np.empty(n_par)
        s = np.empty(n_par)
        for p in range(n_par):
            acc[level_top[C + p]] += (-0.5 * math.log(lam_sum[p])
                                      + 0.5 * bsum[p] * bsum[p] / lam_sum[p])
            m[p] = bsum[p] / lam_sum[p]
            s[p] = s2lev[d, node_lidx[p]] + 1.0 / lam_sum[p]
        climb(acc, m, s, 1, n_par, level_idx, level_start, level_top, node_lidx, s2lev[d])
    return out
