"""The Gaussian marginal likelihood of E1 and the G-study over the packed arrays, and its
gradient: the leaves' level, the sub-levels, then the cell level in one of three forms: folded
into patterns (grouped.py's algebra; the balanced case), cell by cell, or the cells as the top
nodes. The primitives (sections, design rows, the recursion up the tree) are ``kernels.py``'s.
"""

from __future__ import annotations

import math

import numpy as np

from .kernel_cache import kernel
from .kernels import (
    H_CELLS,
    H_E,
    H_FOLD,
    H_J,
    H_L,
    H_LEVELS,
    H_TABLES,
    TABLE,
    _level1,
    _noise,
    _noise_grad,
    _parent_grad,
    _resid,
    _row_grad,
    _row_means,
    _sub_levels,
    _tree,
    fsec,
    isec,
)


@kernel
def gaussian_logp_grad(F, Z, f, s2e, s2sub, s2cp, s2lp, o, df, ds2e, ds2sub, ds2cp, ds2lp,
                       do):
    """log p(data | f, σ's, offsets) with every nested effect integrated out; the gradient is
    added into the d* arrays. ``s2cp``: the cell variance per cell parameter, ``s2lp``: the
    level variances per level parameter (a scalar each for E1; one per group when stacked)."""
    J, E = Z[H_J], Z[H_E]
    lp = _level1(F, Z, f, s2e, df, ds2e)
    if J > 0:
        lp += _sub_levels(F, Z, f, s2e, s2sub, df, ds2e, ds2sub)
    cb = Z[H_CELLS]
    W, cpar = fsec(F, Z, cb + 4), isec(Z, cb + 5)
    noise = _noise(F, Z, J, J, s2e, s2sub)
    g_row = _row_means(F, Z, J, f)
    n_comp = len(W) // E if E > 0 else 0
    ocomp = np.zeros(max(n_comp, 1))
    for j in range(n_comp):
        acc = 0.0
        for e in range(E):
            acc += W[j * E + e] * o[e]
        ocomp[j] = acc
    L, K = Z[H_L], len(noise)
    dnoise = np.zeros(K)
    d_row = np.zeros(len(g_row))
    docomp = np.zeros(max(n_comp, 1))
    cnt = fsec(F, Z, Z[H_TABLES] + TABLE * J + 4)
    lamk = np.empty(K)  # per pattern: a cell's precision (no division or log per cell)
    for k in range(K):
        lamk[k] = 1.0 / (s2cp[cpar[k]] + noise[k])
        if L > 0:
            lp += 0.5 * cnt[k] * math.log(lamk[k])
    dlamk = np.zeros(K)  # d lp / d λ_k, summed over the pattern's cells
    if L == 0:  # no level above the cells: they are the top nodes, their λ through s
        lp += _top_cells(F, Z, J, noise, s2cp, g_row, ocomp, n_comp, s2lp, ds2lp, d_row,
                         dnoise, docomp)
        for k in range(K):
            ds2cp[cpar[k]] += dnoise[k]
    else:
        if Z[H_FOLD] > 0:
            lp += _folded(F, Z, J, lamk, g_row, ocomp, n_comp, s2lp, ds2lp, d_row, dlamk,
                          docomp)
        else:
            lp += _per_cell(F, Z, J, lamk, g_row, ocomp, n_comp, s2lp, ds2lp, d_row, dlamk,
                            docomp)
        for k in range(K):
            ds = -lamk[k] ** 2 * (dlamk[k] + 0.5 * cnt[k] / lamk[k])
            dnoise[k] += ds
            ds2cp[cpar[k]] += ds
    for j in range(n_comp):
        for e in range(E):
            do[e] += docomp[j] * W[j * E + e]
    _noise_grad(F, Z, J, J, dnoise, ds2e, ds2sub)
    _row_grad(F, Z, J, d_row, df)
    return lp


@kernel
def _cell_m(c, k, node_sum, g_row, pd, invn, ocomp, comp, n_comp):
    """Cell c's mean residual given the design means and offsets (its pattern k)."""
    m = (node_sum[c] - g_row[pd[k]]) * invn[k]
    if n_comp > 0:
        m -= ocomp[comp[c]]
    return m


@kernel
def _per_cell(F, Z, J, lamk, g_row, ocomp, n_comp, s2lp, ds2lp, d_row, dlamk, docomp):
    """The cells and the first level above them, cell by cell (unbalanced data with many
    distinct unit patterns). The cells are the bulk: read twice, their m recomputed in the
    reverse pass rather than stored, λ and 1/n per pattern."""
    cb = Z[H_CELLS]
    node_pat, node_sum, comp = isec(Z, cb), fsec(F, Z, cb + 2), isec(Z, cb + 3)
    pd = isec(Z, Z[H_TABLES] + TABLE * J + 1)
    pat_n = fsec(F, Z, Z[H_TABLES] + TABLE * J + 3)
    invn = 1.0 / pat_n
    lb = Z[H_LEVELS]
    idx0, ppar0 = isec(Z, lb), isec(Z, lb + 1)
    n1 = len(ppar0)
    lam1, b1 = np.zeros(n1), np.zeros(n1)
    m1, s1 = np.empty(n1), np.empty(n1)
    quad = 0.0
    for c in range(len(node_pat)):
        k = node_pat[c]
        m = _cell_m(c, k, node_sum, g_row, pd, invn, ocomp, comp, n_comp)
        lam = lamk[k]
        p = idx0[c]
        lam1[p] += lam
        b1[p] += lam * m
        quad += lam * m * m
    lp = -0.5 * quad
    for q in range(n1):
        lp += -0.5 * math.log(lam1[q]) + 0.5 * b1[q] ** 2 / lam1[q]
        m1[q] = b1[q] / lam1[q]
        s1[q] = s2lp[ppar0[q]] + 1.0 / lam1[q]
    dm1, ds1 = np.empty(n1), np.empty(n1)
    lp += _tree(F, Z, 1, m1, s1, s2lp, dm1, ds1, ds2lp)
    for q in range(n1):
        ds2lp[ppar0[q]] += ds1[q]
        dm1[q], ds1[q] = _parent_grad(b1[q], lam1[q], dm1[q], ds1[q])
    for c in range(len(node_pat)):
        k = node_pat[c]
        m = _cell_m(c, k, node_sum, g_row, pd, invn, ocomp, comp, n_comp)
        p = idx0[c]
        dm = lamk[k] * (dm1[p] - m)
        dlamk[k] += -0.5 * m * m + dm1[p] * m + ds1[p]
        d_row[pd[k]] -= dm * invn[k]
        if n_comp > 0:
            docomp[comp[c]] -= dm
    return lp


@kernel
def _top_cells(F, Z, J, noise, s2cp, g_row, ocomp, n_comp, s2lp, ds2lp, d_row, dnoise,
               docomp):
    """The cells as the top nodes of the tree (no level above them)."""
    cb = Z[H_CELLS]
    node_pat, node_sum, comp, cpar = isec(Z, cb), fsec(F, Z, cb + 2), isec(Z, cb + 3), \
        isec(Z, cb + 5)
    pd = isec(Z, Z[H_TABLES] + TABLE * J + 1)
    pat_n = fsec(F, Z, Z[H_TABLES] + TABLE * J + 3)
    C = len(node_pat)
    m1, s1 = np.empty(C), np.empty(C)
    for c in range(C):
        k = node_pat[c]
        m1[c] = (node_sum[c] - g_row[pd[k]]) / pat_n[k]
        if n_comp > 0:
            m1[c] -= ocomp[comp[c]]
        s1[c] = s2cp[cpar[k]] + noise[k]
    dm1, ds1 = np.empty(C), np.empty(C)
    lp = _tree(F, Z, 0, m1, s1, s2lp, dm1, ds1, ds2lp)
    for c in range(C):
        k = node_pat[c]
        dnoise[k] += ds1[c]
        d_row[pd[k]] -= dm1[c] / pat_n[k]
        if n_comp > 0:
            docomp[comp[c]] -= dm1[c]
    return lp


@kernel
def _folded(F, Z, J, lamk, g_row, ocomp, n_comp, s2lp, ds2lp, d_row, dlamk, docomp):
    """The cells and the first level above them folded into patterns (grouped.py): per unit
    u, Λ_u = (C λ)[up(u)] and Σ λ m = Σ_v T_uv λ_v / n_v − (C λg/n)[up(u)] − offsets, so the
    cost is O(units × value classes) in dense rows instead of a scatter over cells."""
    fb = Z[H_FOLD]
    vpat, nv, T, upat = isec(Z, fb), fsec(F, Z, fb + 1), fsec(F, Z, fb + 2), isec(Z, fb + 3)
    Cn, mult = fsec(F, Z, fb + 4), fsec(F, Z, fb + 5)
    ppat, pcomp = isec(Z, fb + 6), isec(Z, fb + 7)
    pcnt, psum, ucomp = fsec(F, Z, fb + 8), fsec(F, Z, fb + 9), isec(Z, fb + 10)
    xu, xv, xj, xn = isec(Z, fb + 11), isec(Z, fb + 12), isec(Z, fb + 13), fsec(F, Z, fb + 14)
    pd = isec(Z, Z[H_TABLES] + TABLE * J + 1)
    pat_n = fsec(F, Z, Z[H_TABLES] + TABLE * J + 3)
    ppar0 = isec(Z, Z[H_LEVELS] + 1)
    K, V, U, UP = len(lamk), len(nv), len(upat), len(mult)
    gk = np.empty(K)
    hk = np.empty(K)
    for k in range(K):
        gk[k] = g_row[pd[k]]
        hk[k] = lamk[k] * gk[k] / pat_n[k]
    av = np.empty(V)
    for v in range(V):
        av[v] = lamk[vpat[v]] / nv[v]
    h, lam_up = np.zeros(UP), np.zeros(UP)
    for q in range(UP):
        for k in range(K):
            h[q] += Cn[q * K + k] * hk[k]
            lam_up[q] += Cn[q * K + k] * lamk[k]
    quad = 0.0
    dgk = np.zeros(K)
    for k in range(K):
        r, dr = _resid(F, Z, J, g_row, k)
        w = lamk[k] / pat_n[k] ** 2
        quad += w * r
        dlamk[k] += -0.5 * r / pat_n[k] ** 2
        dgk[k] += -0.5 * w * dr
    if n_comp > 0:
        for i in range(len(ppat)):
            k, t = ppat[i], ocomp[pcomp[i]]
            e = (psum[i] - pcnt[i] * gk[k]) / pat_n[k]
            quad += lamk[k] * t * (-2.0 * e + pcnt[i] * t)
            dlamk[k] += -0.5 * t * (-2.0 * e + pcnt[i] * t)
            dgk[k] += -lamk[k] * t * pcnt[i] / pat_n[k]
            docomp[pcomp[i]] += lamk[k] * (e - pcnt[i] * t)
    lp = -0.5 * quad
    s = np.empty(U)
    lam_u = np.empty(U)
    for u in range(U):
        acc = -h[upat[u]]
        for v in range(V):
            acc += T[u * V + v] * av[v]
        lam_u[u] = lam_up[upat[u]]
        if n_comp > 0:
            acc -= ocomp[ucomp[u]] * lam_u[u]
        s[u] = acc
    if n_comp > 0:
        for i in range(len(xu)):
            s[xu[i]] -= xn[i] * lamk[vpat[xv[i]]] * (ocomp[xj[i]] - ocomp[ucomp[xu[i]]])
    m1, s1 = np.empty(U), np.empty(U)
    for u in range(U):
        lp += -0.5 * math.log(lam_u[u]) + 0.5 * s[u] ** 2 / lam_u[u]
        m1[u] = s[u] / lam_u[u]
        s1[u] = s2lp[ppar0[u]] + 1.0 / lam_u[u]
    dm1, ds1 = np.empty(U), np.empty(U)
    lp += _tree(F, Z, 1, m1, s1, s2lp, dm1, ds1, ds2lp)
    dav, dh, dlam_up = np.zeros(V), np.zeros(UP), np.zeros(UP)
    dB = np.empty(U)
    for u in range(U):
        ds2lp[ppar0[u]] += ds1[u]
        db, dla = _parent_grad(s[u], lam_u[u], dm1[u], ds1[u])
        dB[u] = db
        if n_comp > 0:
            dla -= db * ocomp[ucomp[u]]
            docomp[ucomp[u]] -= db * lam_u[u]
        for v in range(V):
            dav[v] += db * T[u * V + v]
        dh[upat[u]] -= db
        dlam_up[upat[u]] += dla
    if n_comp > 0:
        for i in range(len(xu)):
            db, k = dB[xu[i]], vpat[xv[i]]
            dlamk[k] -= db * xn[i] * (ocomp[xj[i]] - ocomp[ucomp[xu[i]]])
            docomp[xj[i]] -= db * xn[i] * lamk[k]
            docomp[ucomp[xu[i]]] += db * xn[i] * lamk[k]
    for v in range(V):
        dlamk[vpat[v]] += dav[v] / nv[v]
    for q in range(UP):
        for k in range(K):
            c = Cn[q * K + k]
            dlamk[k] += c * (dlam_up[q] + dh[q] * gk[k] / pat_n[k])
            dgk[k] += c * dh[q] * lamk[k] / pat_n[k]
    for k in range(K):
        d_row[pd[k]] += dgk[k]
    return lp
