"""The joint measurement model's marginal likelihood and its gradient as compiled kernels.

The same likelihood as ``measurement_likelihood.py`` (RECURSION.md), written per cell: a cell's
ratings give its message (J, h) in the path-sum latent, with the latents below the cell (an
LLM's own error, its family's) integrated in closed form (``measurement_leaves.py``, shared
work per count pattern); then the 2×2 closed-form integration climbs
cell → lesson → teacher, value-added joins at the teacher, and the top's constants finish the
sum. One forward pass keeps each level's incoming messages; the reverse pass runs the same
levels down, and each cell's leaf is recomputed from its pairs on the way back (no per-pair
storage). The inputs are the head's per-task arrays (``measurement_head.py``); everything
data-dependent is in F and Z (``fast_measurement.py`` writes them).
"""

from __future__ import annotations

import math

import numpy as np

from .kernel_cache import kernel
from .kernels import LOG_2PI, fsec, isec
from .measurement_layout import (
    M_C,
    M_FAM,
    M_L,
    M_NL,
    M_NT,
    M_P,
    M_R,
    M_S,
    M_T,
    M_VA,
    S_CELL_LESSON,
    S_CELL_TASK,
    S_COL_N,
    S_COL_SQ,
    S_COL_SUM,
    S_LESSON_TASK,
    S_LESSON_TEACHER,
    S_PAT_SRC,
    S_TEACHER_TASK,
    S_VA,
    S_VA_KNOWN,
    S_VA_OBS,
)
from .measurement_leaves import (
    leaves,
    leaves_back,
    pattern_back,
    pattern_coefficients,
    pattern_state,
)


@kernel(inline=True)
def integrate(J11, J12, J22, h1, h2, w1, w2):
    """A node latent ~ N(0, diag(w1, w2)) integrated out of the message (RECURSION.md §2):
    the new message and the node's log constant."""
    dJ = J11 * J22 - J12 * J12
    D = 1.0 + w1 * J11 + w2 * J22 + w1 * w2 * dJ
    quad = (w1 * h1 * h1 + w2 * h2 * h2
            + w1 * w2 * (J22 * h1 * h1 - 2.0 * J12 * h1 * h2 + J11 * h2 * h2))
    return ((J11 + w2 * dJ) / D, J12 / D, (J22 + w1 * dJ) / D,
            ((1.0 + w2 * J22) * h1 - w2 * J12 * h2) / D,
            ((1.0 + w1 * J11) * h2 - w1 * J12 * h1) / D,
            -0.5 * math.log(D) + 0.5 * quad / D)


@kernel(inline=True)
def integrate_back(J11, J12, J22, h1, h2, w1, w2, g1, g2, g3, g4, g5, gd):
    """``integrate``'s reverse pass: from the adjoints of its outputs (the message's five,
    then the constant's) to those of (J11, J12, J22, h1, h2, w1, w2)."""
    dJ = J11 * J22 - J12 * J12
    D = 1.0 + w1 * J11 + w2 * J22 + w1 * w2 * dJ
    P = J22 * h1 * h1 - 2.0 * J12 * h1 * h2 + J11 * h2 * h2
    N1, N3 = J11 + w2 * dJ, J22 + w1 * dJ
    N4 = (1.0 + w2 * J22) * h1 - w2 * J12 * h2
    N5 = (1.0 + w1 * J11) * h2 - w1 * J12 * h1
    N6 = w1 * h1 * h1 + w2 * h2 * h2 + w1 * w2 * P
    gD = (-(g1 * N1 + g2 * J12 + g3 * N3 + g4 * N4 + g5 * N5) / (D * D)
          + gd * (-0.5 / D - 0.5 * N6 / (D * D)))
    a1, a3, a4, a5, a6 = g1 / D, g3 / D, g4 / D, g5 / D, 0.5 * gd / D
    gJ11 = gD * w1 + a1 + a5 * w1 * h2 + a6 * w1 * w2 * h2 * h2
    gJ12 = g2 / D - a4 * w2 * h2 - a5 * w1 * h1 - 2.0 * a6 * w1 * w2 * h1 * h2
    gJ22 = gD * w2 + a3 + a4 * w2 * h1 + a6 * w1 * w2 * h1 * h1
    gdJ = gD * w1 * w2 + a1 * w2 + a3 * w1
    gJ11 += gdJ * J22
    gJ22 += gdJ * J11
    gJ12 -= 2.0 * gdJ * J12
    gh1 = (a4 * (1.0 + w2 * J22) - a5 * w1 * J12
           + a6 * (2.0 * w1 * h1 + 2.0 * w1 * w2 * (J22 * h1 - J12 * h2)))
    gh2 = (-a4 * w2 * J12 + a5 * (1.0 + w1 * J11)
           + a6 * (2.0 * w2 * h2 + 2.0 * w1 * w2 * (J11 * h2 - J12 * h1)))
    gw1 = gD * (J11 + w2 * dJ) + a3 * dJ + a5 * (J11 * h2 - J12 * h1) + a6 * (h1 * h1 + w2 * P)
    gw2 = gD * (J22 + w1 * dJ) + a1 * dJ + a4 * (J22 * h1 - J12 * h2) + a6 * (h2 * h2 + w1 * P)
    return gJ11, gJ12, gJ22, gh1, gh2, gw1, gw2


@kernel
def _columns(F, Z, mu, sig2, mu_e, rho, s2e, dmu, dsig2, dmu_e, drho, ds2e):
    """Σ over (task, column) of the ratings' constant: −½ [n log 2πv + (Q − 2mS + nm²)/v]."""
    T, S, R = Z[M_T], Z[M_S], Z[M_R]
    cn, cs, cq = fsec(F, Z, S_COL_N), fsec(F, Z, S_COL_SUM), fsec(F, Z, S_COL_SQ)
    lp = 0.0
    for t in range(T):
        for k in range(S + R):
            j = t * (S + R) + k
            n = cn[j]
            if k < S:
                m, v = mu[t * S + k], sig2[t * S + k]
            else:
                m, v = mu_e[t] + rho[t * R + k - S], s2e[t]
            q = cq[j] - 2.0 * m * cs[j] + n * m * m
            lp += -0.5 * (n * (LOG_2PI + math.log(v)) + q / v)
            dm = (cs[j] - n * m) / v
            dv = -0.5 * (n / v - q / (v * v))
            if k < S:
                dmu[t * S + k] += dm
                dsig2[t * S + k] += dv
            else:
                dmu_e[t] += dm
                drho[t * R + k - S] += dm
                ds2e[t] += dv
    return lp


@kernel
def _va_terms(F, Z, n, om, va):
    """Teacher n's value-added terms: (task, ω₁, ω₂, observed, c_q, c_s, residual variance,
    value-added − ν₀ where observed)."""
    t = isec(Z, S_TEACHER_TASK)[n]
    T = Z[M_T]
    o = fsec(F, Z, S_VA_OBS)[n]
    sv2 = va[3 * T + t] + fsec(F, Z, S_VA_KNOWN)[n]
    return (t, om[4 * T + t], om[5 * T + t], o, va[T + t], va[2 * T + t], sv2,
            (fsec(F, Z, S_VA)[n] - va[t]) * o)


@kernel
def _va_in(F, Z, n, msg, om, va):
    """Value-added into teacher n's message (in SD units of its latents); returns the
    message (its latents' variances are now 1) and the term's constant."""
    _, w1, w2, o, cq, cs, sv2, r = _va_terms(F, Z, n, om, va)
    s1, s2 = math.sqrt(w1), math.sqrt(w2)
    J11, J12, J22, h1, h2 = msg[n, 0], msg[n, 1], msg[n, 2], msg[n, 3], msg[n, 4]
    out = (w1 * J11 + o * cq * cq / sv2, s1 * s2 * J12 + o * cq * cs / sv2,
           w2 * J22 + o * cs * cs / sv2, s1 * h1 + r * cq / sv2, s2 * h2 + r * cs / sv2)
    const = -0.5 * o * (LOG_2PI + math.log(sv2) + r * r / sv2)
    return out, const


@kernel
def _va_back(F, Z, n, msg, om, va, g, gmsg, gom, gva):
    """``_va_in``'s reverse pass from the adjoints g of its message (its constant's is 1)."""
    t, w1, w2, o, cq, cs, sv2, r = _va_terms(F, Z, n, om, va)
    T = Z[M_T]
    s1, s2 = math.sqrt(w1), math.sqrt(w2)
    J11, J12, J22, h1, h2 = msg[n, 0], msg[n, 1], msg[n, 2], msg[n, 3], msg[n, 4]
    gmsg[n, 0], gmsg[n, 1], gmsg[n, 2] = g[0] * w1, g[1] * s1 * s2, g[2] * w2
    gmsg[n, 3], gmsg[n, 4] = g[3] * s1, g[4] * s2
    gom[4 * T + t] += g[0] * J11 + (g[1] * J12 * s2 + g[3] * h1) / (2.0 * s1)
    gom[5 * T + t] += g[2] * J22 + (g[1] * J12 * s1 + g[4] * h2) / (2.0 * s2)
    gcq = o * (2.0 * cq * g[0] + cs * g[1]) / sv2 + r * g[3] / sv2
    gcs = o * (cq * g[1] + 2.0 * cs * g[2]) / sv2 + r * g[4] / sv2
    gsv2 = (-(o * (cq * cq * g[0] + cq * cs * g[1] + cs * cs * g[2]) + r * (cq * g[3] + cs * g[4]))
            / (sv2 * sv2) - 0.5 * o * (1.0 / sv2 - r * r / (sv2 * sv2)))
    gr = (cq * g[3] + cs * g[4]) / sv2 - r / sv2
    gva[t] -= o * gr
    gva[T + t] += gcq
    gva[2 * T + t] += gcs
    gva[3 * T + t] += gsv2


@kernel
def measurement_logp_grad(F, Z, mu, lam, sig2, mu_e, rho, s2e, t2, tf, om, va, dmu, dlam,
                          dsig2, dmu_e, drho, ds2e, dt2, dtf, dom, dva):
    """log p(ratings, value-added | the per-task parameters) and its gradient (added into the
    d* arrays). ``om``: the node variances per level and task (q², s² of cell, lesson,
    teacher); ``va``: value-added's ν₀, c_q, c_s and residual variance per task."""
    T, S, C, NL, NT, P = Z[M_T], Z[M_S], Z[M_C], Z[M_NL], Z[M_NT], Z[M_P]
    L, Fm = max(Z[M_L], 1), max(Z[M_FAM], 1)
    ctask, clesson = isec(Z, S_CELL_TASK), isec(Z, S_CELL_LESSON)
    lteacher, ltask = isec(Z, S_LESSON_TEACHER), isec(Z, S_LESSON_TASK)
    ttask = isec(Z, S_TEACHER_TASK)
    w = 1.0 / sig2
    PJ, PL, PF = np.empty((P, 4)), np.empty((P, L, 4)), np.empty((P, Fm, 4))
    pattern_state(F, Z, w, lam, t2, tf, PJ, PL, PF)
    Q = len(isec(Z, S_PAT_SRC))
    A, K, KR, U = np.empty((2, Q)), np.empty(P), np.empty((P, L)), np.empty((P, L, 2))
    pattern_coefficients(F, Z, w, lam, mu, PL, PF, A, K, KR, U)
    lp = _columns(F, Z, mu, sig2, mu_e, rho, s2e, dmu, dsig2, dmu_e, drho, ds2e)
    cin, lin, tin = np.empty((C, 5)), np.zeros((NL, 5)), np.zeros((NT, 5))
    RB = np.empty((L, C))
    lp += leaves(F, Z, mu_e, rho, s2e, PJ, PL, PF, A, K, KR, U, cin, RB)
    for c in range(C):
        t = ctask[c]
        o = integrate(cin[c, 0], cin[c, 1], cin[c, 2], cin[c, 3], cin[c, 4], om[t], om[T + t])
        lp += o[5]
        p = clesson[c]
        for j in range(5):
            lin[p, j] += o[j]
    for q in range(NL):
        t = ltask[q]
        o = integrate(lin[q, 0], lin[q, 1], lin[q, 2], lin[q, 3], lin[q, 4], om[2 * T + t],
                      om[3 * T + t])
        lp += o[5]
        p = lteacher[q]
        for j in range(5):
            tin[p, j] += o[j]
    # The top, then back down: adjoints of each level's incoming messages.
    gt = np.zeros((NT, 5))
    g = np.zeros(5)
    has_va = Z[M_VA] == 1
    for n in range(NT):
        t = ttask[n]
        if has_va:
            m, const = _va_in(F, Z, n, tin, om, va)
            lp += const
            w1 = w2 = 1.0
        else:
            m = (tin[n, 0], tin[n, 1], tin[n, 2], tin[n, 3], tin[n, 4])
            w1, w2 = om[4 * T + t], om[5 * T + t]
        o = integrate(m[0], m[1], m[2], m[3], m[4], w1, w2)
        lp += o[5]
        b = integrate_back(m[0], m[1], m[2], m[3], m[4], w1, w2, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0)
        if has_va:
            for j in range(5):
                g[j] = b[j]
            _va_back(F, Z, n, tin, om, va, g, gt, dom, dva)
        else:
            for j in range(5):
                gt[n, j] = b[j]
            dom[4 * T + t] += b[5]
            dom[5 * T + t] += b[6]
    gl = np.empty((NL, 5))
    for q in range(NL):
        t, p = ltask[q], lteacher[q]
        b = integrate_back(lin[q, 0], lin[q, 1], lin[q, 2], lin[q, 3], lin[q, 4], om[2 * T + t],
                           om[3 * T + t], gt[p, 0], gt[p, 1], gt[p, 2], gt[p, 3], gt[p, 4], 1.0)
        for j in range(5):
            gl[q, j] = b[j]
        dom[2 * T + t] += b[5]
        dom[3 * T + t] += b[6]
    AJ, AL, AF = np.empty((P, 4)), np.zeros((P, L, 5)), np.zeros((P, Fm, 1))
    Y = np.empty((2, Q))
    dw = np.zeros(T * S)
    for c in range(C):
        t, p = ctask[c], clesson[c]
        b = integrate_back(cin[c, 0], cin[c, 1], cin[c, 2], cin[c, 3], cin[c, 4], om[t],
                           om[T + t], gl[p, 0], gl[p, 1], gl[p, 2], gl[p, 3], gl[p, 4], 1.0)
        dom[t] += b[5]
        dom[T + t] += b[6]
        for j in range(5):
            cin[c, j] = b[j]  # now the adjoints of the cells' messages
    leaves_back(F, Z, mu_e, rho, s2e, cin, RB, PL, PF, U, AJ, AL, AF, Y, dmu_e, drho, ds2e)
    pattern_back(F, Z, w, lam, mu, t2, tf, PL, PF, A, AJ, AL, AF, Y, dmu, dlam, dw, dt2, dtf)
    for i in range(T * S):
        dsig2[i] -= w[i] * w[i] * dw[i]
    return lp
