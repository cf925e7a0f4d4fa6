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
def folded_logp(pat_start, pat_design, pat_cnt, pat_n, pat_level, pat_col, pat_e, pat_kids,
                pat_child, w_top, w_pat, w_n, w_a, w_q, w_w, l_top, l_pat, l_level, l_n, l_a,
                l_q, j_top, j_pat, j_comp, j_n, j_a, j_q, r2_top, r2_design, r2_e, r2_y,
                r3_par, r3_pat, r3_comp, r3_c, r3_t, top_const, star, top_at, lidx_at,
                comp_w, level_idx, level_start, level_top, node_lidx, n_top,
                f, s2cell, s2e, s2lev, offset):
    """``leaves_logp`` from the folded tables (pointwise_fold.py): per draw, each pattern's
    design total g, its Σ n f² (leaves) and precision π (levels up to ℓ* = ``star``, in
    order); the leaves' own terms (w rows), every folded integration (l rows: the child side
    below ℓ*, the parent side above the leaves), the ℓ* nodes' own terms with their offsets
    (j rows), Σ y f (r2 rows), their integration into the first unfolded level (r3 rows);
    the levels above as ``climb``."""
    n_draws = f.shape[0]
    P = len(pat_n)
    E = offset.shape[1]
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
        g = np.empty(P)
        ff = np.empty(P)
        pi = np.empty(P)
        lam = np.empty(P)  # Λ = kids × the children's π (levels above the leaves)
        se = np.empty(P)
        for k in range(P):
            gk = fk = 0.0
            for q in range(pat_start[k], pat_start[k + 1]):
                fv = f[d, pat_design[q]]
                gk += pat_cnt[q] * fv
                fk += pat_cnt[q] * fv * fv
            g[k] = gk
            ff[k] = fk
            if pat_level[k] == 0:
                se[k] = s2e[d, pat_e[k]]
                pi[k] = 1.0 / (s2cell[d, pat_col[k]] + se[k] / pat_n[k])
                lam[k] = 0.0
            else:
                se[k] = 0.0
                lam[k] = pat_kids[k] * pi[pat_child[k]]
                pi[k] = 1.0 / (s2lev[d, pat_col[k]] + 1.0 / lam[k])
        for r in range(len(w_top)):
            k = w_pat[r]
            n = pat_n[k]
            N = w_n[r]
            resid_sq = w_q[r] - 2.0 * g[k] * w_a[r] + N * g[k] * g[k]
            acc[w_top[r]] += (-0.5 * N * (n - 1.0) * math.log(se[k])
                              - (w_w[r] + N * ff[k] - resid_sq / n) / (2.0 * se[k]))
        for r in range(len(l_top)):
            k = l_pat[r]
            n = pat_n[k]
            N = l_n[r]
            msq = (l_q[r] - 2.0 * g[k] * l_a[r] + N * g[k] * g[k]) / (n * n)
            if l_level[r] < star:
                acc[l_top[r]] += 0.5 * N * math.log(pi[k]) - 0.5 * pi[k] * msq
            if l_level[r] > 0:
                acc[l_top[r]] += -0.5 * N * math.log(lam[k]) + 0.5 * lam[k] * msq
        for r in range(len(j_top)):
            k = j_pat[r]
            n = pat_n[k]
            N = j_n[r]
            G = g[k] + n * ocomp[j_comp[r]]
            acc[j_top[r]] += (0.5 * N * math.log(pi[k])
                              - 0.5 * pi[k] * (j_q[r] - 2.0 * G * j_a[r] + N * G * G) / (n * n))
        for r in range(len(r2_top)):
            acc[r2_top[r]] += f[d, r2_design[r]] * r2_y[r] / s2e[d, r2_e[r]]
        lam_sum = np.zeros(n_par)
        bsum = np.zeros(n_par)
        for r in range(len(r3_par)):
            k = r3_pat[r]
            n = pat_n[k]
            p = r3_par[r]
            G = g[k] + n * ocomp[r3_comp[r]]
            lam_sum[p] += r3_c[r] * pi[k]
            bsum[p] += pi[k] * (r3_t[r] - r3_c[r] * G) / n
        m = np.empty(n_par)
        s = np.empty(n_par)
        for p in range(n_par):
            acc[level_top[top_at + p]] += (-0.5 * math.log(lam_sum[p])
                                           + 0.5 * bsum[p] * bsum[p] / lam_sum[p])
            m[p] = bsum[p] / lam_sum[p]
            s[p] = s2lev[d, node_lidx[lidx_at + p]] + 1.0 / lam_sum[p]
        climb(acc, m, s, star + 1, lidx_at + n_par, level_idx, level_start, level_top,
              node_lidx, s2lev[d])
    return out
