"""Compiled kernels of the Gaussian marginal likelihood and its gradient, independent of the data.

The PyMC graph of a model is compiled anew for every data set (its data are constants of the
graph): 15 s on the small preset, 35–85 s at reference size. These kernels take the data as
arrays instead, so numba compiles them once per installation (kernel_cache.py: on disk, keyed
by the kernels' sources) and every later fit only loads them.

The data travel in two flat arrays: ``F`` (float64) and ``Z`` (int64). ``Z`` starts with a
header of sizes and section numbers (the ``H_*`` slots below) and a table of sections
(offset, length), so one signature serves every data set and every model form; the builder
(``fast_e1.Pack``) writes the same layout. The likelihood is the one of ``likelihood.py``
(per-cell form, sub-levels at pattern cost, offsets, per-group residual variances), written
as one forward pass and its hand-written reverse pass; ``tests/test_fast_path.py`` checks
value and gradient against the PyMC model at random points.
"""

from __future__ import annotations

import math

import numpy as np

from .kernel_cache import kernel

LOG_2PI = math.log(2.0 * math.pi)
HEADER = 64  # header slots at the start of Z; the section table follows
# Header slots of the likelihood (the head's are in fast_e1.py's kernels).
H_D, H_G, H_J, H_L, H_E = 0, 1, 2, 3, 4  # design cells, groups, sub-levels, levels, offsets
H_GLOBAL, H_TABLES, H_CELLS, H_LEVELS = 6, 7, 8, 9  # first section of each part
H_CONST = 10  # the recursion's constant, in F at this section
H_FOLD = 11  # first section of the folded cell level (grouped.py's arrays), 0 when per cell
# A table's sections: design-row values (sparse), pattern → row, pattern → group, ratings per
# node, nodes, Σ S, Σ S², children per sub-level, row pointers, row columns.
TABLE = 10


@kernel
def fsec(F, Z, s):
    o = Z[HEADER + 2 * s]
    return F[o:o + Z[HEADER + 2 * s + 1]]


@kernel
def isec(Z, s):
    o = Z[HEADER + 2 * s]
    return Z[o:o + Z[HEADER + 2 * s + 1]]


@kernel
def _row_means(F, Z, t, f):
    """Σ_d n_kd f_d per distinct design row of table ``t`` (rows stored sparse: a G-study's
    lessons hold a few of 228 design cells in thousands of combinations)."""
    base = Z[H_TABLES] + TABLE * t
    val, ptr, col = fsec(F, Z, base), isec(Z, base + 8), isec(Z, base + 9)
    R = len(ptr) - 1
    out = np.zeros(R)
    for r in range(R):
        acc = 0.0
        for q in range(ptr[r], ptr[r + 1]):
            acc += val[q] * f[col[q]]
        out[r] = acc
    return out


@kernel
def _row_grad(F, Z, t, d_row, df):
    base = Z[H_TABLES] + TABLE * t
    val, ptr, col = fsec(F, Z, base), isec(Z, base + 8), isec(Z, base + 9)
    for r in range(len(ptr) - 1):
        g = d_row[r]
        if g != 0.0:
            for q in range(ptr[r], ptr[r + 1]):
                df[col[q]] += g * val[q]


@kernel
def _noise(F, Z, t, depth, s2e, s2sub):
    """Per pattern of table ``t``: the variance of one depth-level node's mean residual given
    its own effect (likelihood._noise)."""
    base = Z[H_TABLES] + TABLE * t
    grp, pat_n, ks = isec(Z, base + 2), fsec(F, Z, base + 3), fsec(F, Z, base + 7)
    K = len(pat_n)
    out = np.empty(K)
    for k in range(K):
        prod = 1.0
        for j in range(t):
            prod *= ks[k * t + j]
        v = s2e[grp[k]] * prod / pat_n[k]
        for j in range(depth):
            v = (s2sub[j] + v) / ks[k * t + j]
        out[k] = v
    return out


@kernel
def _noise_grad(F, Z, t, depth, dnoise, ds2e, ds2sub):
    base = Z[H_TABLES] + TABLE * t
    grp, pat_n, ks = isec(Z, base + 2), fsec(F, Z, base + 3), fsec(F, Z, base + 7)
    for k in range(len(pat_n)):
        a = dnoise[k]
        prod = 1.0
        for j in range(t):
            prod *= ks[k * t + j]
        for j in range(depth - 1, -1, -1):
            a /= ks[k * t + j]
            ds2sub[j] += a
        ds2e[grp[k]] += a * prod / pat_n[k]


@kernel
def _resid(F, Z, t, g_row, k):
    """Σ over the nodes of pattern k of (S − g_k)², and its derivative in g_k."""
    base = Z[H_TABLES] + TABLE * t
    pd = isec(Z, base + 1)
    cnt, A, Q = fsec(F, Z, base + 4), fsec(F, Z, base + 5), fsec(F, Z, base + 6)
    g = g_row[pd[k]]
    return Q[k] - 2.0 * g * A[k] + cnt[k] * g * g, -2.0 * A[k] + 2.0 * cnt[k] * g


@kernel
def _level1(F, Z, f, s2e, df, ds2e):
    D, G = Z[H_D], Z[H_G]
    gb = Z[H_GLOBAL]
    dsum, dn, dgrp = fsec(F, Z, gb), fsec(F, Z, gb + 1), isec(Z, gb + 2)
    gss, gdf, slogn = fsec(F, Z, gb + 3), fsec(F, Z, gb + 4), fsec(F, Z, gb + 5)[0]
    tb = Z[H_TABLES]
    grp, pat_n = isec(Z, tb + 2), fsec(F, Z, tb + 3)
    ssw = gss.copy()
    for d in range(D):
        ssw[dgrp[d]] += -2.0 * f[d] * dsum[d] + dn[d] * f[d] * f[d]
    g_row = _row_means(F, Z, 0, f)
    K = len(pat_n)
    dR = np.empty(K)
    for k in range(K):
        r, dr = _resid(F, Z, 0, g_row, k)
        ssw[grp[k]] -= r / pat_n[k]
        dR[k] = dr / pat_n[k]
    lp = -0.5 * slogn
    dssw = np.empty(G)
    for g in range(G):
        lp += -0.5 * gdf[g] * (LOG_2PI + math.log(s2e[g])) - ssw[g] / (2.0 * s2e[g])
        ds2e[g] += -0.5 * gdf[g] / s2e[g] + ssw[g] / (2.0 * s2e[g] ** 2)
        dssw[g] = -1.0 / (2.0 * s2e[g])
    for d in range(D):
        df[d] += dssw[dgrp[d]] * (-2.0 * dsum[d] + 2.0 * dn[d] * f[d])
    pd = isec(Z, tb + 1)
    d_row = np.zeros(len(g_row))
    for k in range(K):
        d_row[pd[k]] -= dssw[grp[k]] * dR[k]
    _row_grad(F, Z, 0, d_row, df)
    return lp


@kernel
def _sub_levels(F, Z, f, s2e, s2sub, df, ds2e, ds2sub):
    """Σ over the sub-levels' parents of log R, children integrated in closed form."""
    J = Z[H_J]
    lp = 0.0
    for lev in range(1, J + 1):
        c, p = lev - 1, lev
        cb, pb = Z[H_TABLES] + TABLE * c, Z[H_TABLES] + TABLE * p
        c_n, p_n = fsec(F, Z, cb + 3), fsec(F, Z, pb + 3)
        p_cnt, p_ks = fsec(F, Z, pb + 4), fsec(F, Z, pb + 7)
        s = s2sub[lev - 1]
        nc = _noise(F, Z, c, lev - 1, s2e, s2sub)
        npn = _noise(F, Z, p, lev - 1, s2e, s2sub)
        gc, gp = _row_means(F, Z, c, f), _row_means(F, Z, p, f)
        dgc, dgp = np.zeros(len(gc)), np.zeros(len(gp))
        dnc, dnp = np.zeros(len(nc)), np.zeros(len(npn))
        pdc, pdp = isec(Z, cb + 1), isec(Z, pb + 1)
        for k in range(len(nc)):
            lam = 1.0 / (s + nc[k])
            r, dr = _resid(F, Z, c, gc, k)
            w = lam / c_n[k] ** 2
            lp -= 0.5 * w * r
            dgc[pdc[k]] -= 0.5 * w * dr
            dlam = -0.5 * r / c_n[k] ** 2
            dsv = -lam * lam * dlam
            ds2sub[lev - 1] += dsv
            dnc[k] = dsv
        for k in range(len(npn)):
            kk = p_ks[k * p + lev - 1]
            lam = 1.0 / (s + npn[k])
            nch = p_n[k] / kk
            r, dr = _resid(F, Z, p, gp, k)
            w = lam / (kk * nch * nch)
            lp += 0.5 * w * r + p_cnt[k] * (-0.5 * (kk - 1.0) * LOG_2PI
                                             + 0.5 * (kk - 1.0) * math.log(lam)
                                             - 0.5 * math.log(kk))
            dgp[pdp[k]] += 0.5 * w * dr
            dlam = 0.5 * r / (kk * nch * nch) + p_cnt[k] * 0.5 * (kk - 1.0) / lam
            dsv = -lam * lam * dlam
            ds2sub[lev - 1] += dsv
            dnp[k] = dsv
        _noise_grad(F, Z, c, lev - 1, dnc, ds2e, ds2sub)
        _noise_grad(F, Z, p, lev - 1, dnp, ds2e, ds2sub)
        _row_grad(F, Z, c, dgc, df)
        _row_grad(F, Z, p, dgp, df)
    return lp


@kernel
def _tree(F, Z, first, m0, s0, s2lp, dm0, ds0, ds2lp):
    """The nested levels from level ``first`` up (recursion.nested_logp; ``m0``, ``s0`` the
    nodes below it) and the reverse pass: fills dm0, ds0 and ds2lp (per level parameter)."""
    L = Z[H_L] - first
    lb = Z[H_LEVELS] + 3 * first
    sizes = np.empty(L + 1, dtype=np.int64)
    sizes[0] = len(m0)
    for lev in range(L):
        sizes[lev + 1] = len(isec(Z, lb + 3 * lev + 1))
    offs = np.zeros(L + 2, dtype=np.int64)
    for lev in range(L + 1):
        offs[lev + 1] = offs[lev] + sizes[lev]
    M = np.empty(offs[L + 1])
    S = np.empty(offs[L + 1])
    B = np.zeros(offs[L + 1])
    Lam = np.zeros(offs[L + 1])
    M[:sizes[0]] = m0
    S[:sizes[0]] = s0
    lp = fsec(F, Z, Z[H_CONST])[0]
    for lev in range(L):
        idx, ppar = isec(Z, lb + 3 * lev), isec(Z, lb + 3 * lev + 1)
        a, b = offs[lev], offs[lev + 1]
        for i in range(sizes[lev]):
            lam = 1.0 / S[a + i]
            p = b + idx[i]
            Lam[p] += lam
            B[p] += lam * M[a + i]
            lp -= 0.5 * lam * M[a + i] ** 2
        # Σ 0.5 log λ − Σ 0.5 log Λ as logs of running products: a log per node was half
        # the cost of this pass.
        lp -= 0.5 * (_log_sum(S[a:b]) + _log_sum(Lam[b:b + sizes[lev + 1]]))
        for q in range(sizes[lev + 1]):
            p = b + q
            lp += 0.5 * B[p] ** 2 / Lam[p]
            M[p] = B[p] / Lam[p]
            S[p] = s2lp[ppar[q]] + 1.0 / Lam[p]
    a = offs[L]
    gM = np.empty(offs[L + 1])
    gS = np.empty(offs[L + 1])
    for q in range(sizes[L]):
        m, s = M[a + q], S[a + q]
        lp += -0.5 * (LOG_2PI + math.log(s) + m * m / s)
        gM[a + q] = -m / s
        gS[a + q] = -0.5 / s + 0.5 * m * m / (s * s)
    for lev in range(L - 1, -1, -1):
        idx, ppar = isec(Z, lb + 3 * lev), isec(Z, lb + 3 * lev + 1)
        a, b = offs[lev], offs[lev + 1]
        for q in range(sizes[lev + 1]):
            p = b + q
            ds2lp[ppar[q]] += gS[p]
            gM[p], gS[p] = _parent_grad(B[p], Lam[p], gM[p], gS[p])
        for i in range(sizes[lev]):
            p = b + idx[i]
            gM[a + i], gS[a + i] = _child_grad(M[a + i], S[a + i], gM[p], gS[p])
    dm0[:] = gM[:sizes[0]]
    ds0[:] = gS[:sizes[0]]
    return lp


@kernel
def _log_sum(v):
    """Σ log v for v > 0: logs of running products, flushed before they leave the range."""
    acc, prod = 0.0, 1.0
    for i in range(len(v)):
        prod *= v[i]
        if prod > 1e150 or prod < 1e-150:
            acc += math.log(prod)
            prod = 1.0
    return acc + math.log(prod)


@kernel
def _parent_grad(bb, la, gm, gs):
    """A parent's (dB, dΛ) from the gradient in its mean B/Λ and variance σ² + 1/Λ."""
    return ((bb + gm) / la,
            -0.5 / la - 0.5 * bb * bb / (la * la) - gm * bb / (la * la) - gs / (la * la))


@kernel
def _child_grad(m, s, db, dlam_parent):
    """A child's (dm, ds) from its parent's (dB, dΛ)."""
    lam = 1.0 / s
    dlam = 0.5 / lam - 0.5 * m * m + db * m + dlam_parent
    return -lam * m + db * lam, -lam * lam * dlam
