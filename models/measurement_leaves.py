"""The joint measurement model's leaves (a cell's ratings as a message in its path-sum latent)
as compiled kernels, forward and reverse.

What depends only on a cell's counts (its information J, each sub-cell latent's shrinkage
c = τ²/(1 + τ² W) and e = 1/(1 + τ² W), their log determinants) is computed once per count
*pattern* (``pattern_state``); a cell adds what depends on its sums: h, and ½ c R² for each
LLM's (then family's) residual R. The reverse pass collects per pattern what the cells' adjoints
make of those shared quantities (``pattern_back``), so a cell costs a pass over its (source,
count, sum) pairs and a few products per LLM and family, without a division or a log.

Notation as in ``measurement_likelihood.py``: a source's precision w = 1/σ², loading λ,
residual r = S − n μ; per LLM W = Σ n w, B1 = Σ n w λ, R = Σ w r; per family the same through
e: F1 = Σ B1 e, F2 = Σ W e, Fh = Σ R e.
"""

from __future__ import annotations

import math

import numpy as np

from .kernel_cache import kernel
from .kernels import fsec, isec
from .measurement_layout import (
    M_C,
    M_P,
    M_R,
    M_S,
    M_SUB,
    S_CELL_PAT,
    S_CELL_TASK,
    S_ER_N,
    S_ER_PTR,
    S_ER_RATER,
    S_LLM_FAM,
    S_NE,
    S_PAIR_N,
    S_PAIR_PTR,
    S_PAIR_SRC,
    S_PAIR_SUM,
    S_PAT_CELLS,
    S_PAT_N,
    S_PAT_PTR,
    S_PAT_SRC,
    S_PAT_TASK,
    S_SE,
    S_SRC_LLM,
    SUB_FAMILY,
    SUB_NONE,
)

W_, B1_, C_, E_ = 0, 1, 2, 3  # PL's columns (per pattern and LLM)
F1_, F2_, CF_, EF_ = 0, 1, 2, 3  # PF's columns (per pattern and family)


@kernel
def pattern_state(F, Z, w, lam, t2, tf, PJ, PL, PF):
    """Per pattern: J (three entries) and the sub-cell latents' log constant into PJ; per LLM
    W, B1, c, e into PL; per family F1, F2, cf, ef into PF."""
    S = Z[M_S]
    ptask, ptr = isec(Z, S_PAT_TASK), isec(Z, S_PAT_PTR)
    src, cnt, llm = isec(Z, S_PAT_SRC), fsec(F, Z, S_PAT_N), isec(Z, S_SRC_LLM)
    fam = isec(Z, S_LLM_FAM)
    sub = Z[M_SUB]
    PL[:] = 0.0
    PF[:] = 0.0
    for p in range(Z[M_P]):
        t = ptask[p]
        J11 = J12 = J22 = 0.0
        for k in range(ptr[p], ptr[p + 1]):
            i = t * S + src[k]
            nw = cnt[k] * w[i]
            J11 += nw * lam[i] * lam[i]
            J12 += nw * lam[i]
            J22 += nw
            PL[p, llm[src[k]], W_] += nw
            PL[p, llm[src[k]], B1_] += nw * lam[i]
        const = 0.0
        if sub != SUB_NONE:
            for g in range(PL.shape[1]):
                Wg, B = PL[p, g, W_], PL[p, g, B1_]
                e = 1.0 / (1.0 + t2[t] * Wg)
                c = t2[t] * e
                PL[p, g, C_], PL[p, g, E_] = c, e
                if Wg > 0.0:
                    J11 -= c * B * B
                    J12 -= c * B * Wg
                    J22 -= c * Wg * Wg
                    const -= 0.5 * math.log(1.0 + t2[t] * Wg)
                if sub == SUB_FAMILY:
                    PF[p, fam[g], F1_] += B * e
                    PF[p, fam[g], F2_] += Wg * e
            if sub == SUB_FAMILY:
                for f in range(PF.shape[1]):
                    F1, F2 = PF[p, f, F1_], PF[p, f, F2_]
                    ef = 1.0 / (1.0 + tf[t] * F2)
                    cf = tf[t] * ef
                    PF[p, f, CF_], PF[p, f, EF_] = cf, ef
                    if F2 > 0.0:
                        J11 -= cf * F1 * F1
                        J12 -= cf * F1 * F2
                        J22 -= cf * F2 * F2
                        const -= 0.5 * math.log(1.0 + tf[t] * F2)
        PJ[p, 0], PJ[p, 1], PJ[p, 2], PJ[p, 3] = J11, J12, J22, const


@kernel
def leaves(F, Z, mu, lam, w, mu_e, rho, s2e, PJ, PL, PF, msg, RC):
    """Every cell's message (J11, J12, J22, h1, h2) into msg, each LLM's residual R into RC
    (cells × LLMs, for the reverse pass); returns the sub-cell latents' log constants summed.
    One loop with its body written out: numba's per-cell helpers, inlined or not, cost more
    than the cell's arithmetic (a reference count per array per call)."""
    S, Rn, sub = Z[M_S], Z[M_R], Z[M_SUB]
    ctask, cpat = isec(Z, S_CELL_TASK), isec(Z, S_CELL_PAT)
    ptr, src, pn, ps = isec(Z, S_PAIR_PTR), isec(Z, S_PAIR_SRC), fsec(F, Z, S_PAIR_N), \
        fsec(F, Z, S_PAIR_SUM)
    llm, fam = isec(Z, S_SRC_LLM), isec(Z, S_LLM_FAM)
    eptr, rater, ern = isec(Z, S_ER_PTR), isec(Z, S_ER_RATER), fsec(F, Z, S_ER_N)
    nE, sE = fsec(F, Z, S_NE), fsec(F, Z, S_SE)
    L, Fm = PL.shape[1], PF.shape[1]
    Fh = np.empty(Fm)
    total = 0.0
    for c in range(Z[M_C]):
        t, p = ctask[c], cpat[c]
        R = RC[c]
        for g in range(L):
            R[g] = 0.0
        h1 = h2 = 0.0
        for k in range(ptr[c], ptr[c + 1]):
            i = t * S + src[k]
            wr = w[i] * (ps[k] - pn[k] * mu[i])
            h1 += lam[i] * wr
            h2 += wr
            R[llm[src[k]]] += wr
        extra = PJ[p, 3]
        if sub != SUB_NONE:
            for g in range(L):
                cg = PL[p, g, C_]
                h1 -= cg * PL[p, g, B1_] * R[g]
                h2 -= cg * PL[p, g, W_] * R[g]
                extra += 0.5 * cg * R[g] * R[g]
            if sub == SUB_FAMILY:
                for f in range(Fm):
                    Fh[f] = 0.0
                for g in range(L):
                    Fh[fam[g]] += R[g] * PL[p, g, E_]
                for f in range(Fm):
                    if PF[p, f, F2_] > 0.0:
                        cf = PF[p, f, CF_]
                        h1 -= cf * PF[p, f, F1_] * Fh[f]
                        h2 -= cf * PF[p, f, F2_] * Fh[f]
                        extra += 0.5 * cf * Fh[f] * Fh[f]
        sev = 0.0
        for k in range(eptr[c], eptr[c + 1]):
            sev += ern[k] * rho[t * Rn + rater[k]]
        msg[c, 0] = PJ[p, 0] + nE[c] / s2e[t]
        msg[c, 1], msg[c, 2] = PJ[p, 1], PJ[p, 2]
        msg[c, 3] = h1 + (sE[c] - nE[c] * mu_e[t] - sev) / s2e[t]
        msg[c, 4] = h2
        total += extra
    return total


@kernel
def leaves_back(F, Z, mu, lam, w, mu_e, rho, s2e, adj, RC, PL, PF, AJ, AL, AF, dmu, dlam, dw,
                dmu_e, drho, ds2e):
    """``leaves``' reverse pass from the adjoints of every cell's message (adj; each cell's
    constant's is 1): what depends on a cell's sums into the gradients, what its pattern
    shares into AJ, AL, AF (``pattern_back`` finishes those)."""
    S, Rn, sub = Z[M_S], Z[M_R], Z[M_SUB]
    ctask, cpat = isec(Z, S_CELL_TASK), isec(Z, S_CELL_PAT)
    ptr, src, pn, ps = isec(Z, S_PAIR_PTR), isec(Z, S_PAIR_SRC), fsec(F, Z, S_PAIR_N), \
        fsec(F, Z, S_PAIR_SUM)
    llm, fam = isec(Z, S_SRC_LLM), isec(Z, S_LLM_FAM)
    eptr, rater, ern = isec(Z, S_ER_PTR), isec(Z, S_ER_RATER), fsec(F, Z, S_ER_N)
    nE, sE = fsec(F, Z, S_NE), fsec(F, Z, S_SE)
    L, Fm = PL.shape[1], PF.shape[1]
    Fh, dR, dFh = np.empty(Fm), np.empty(L), np.empty(Fm)
    for c in range(Z[M_C]):
        t, p = ctask[c], cpat[c]
        a11, a12, a22, ah1, ah2 = adj[c, 0], adj[c, 1], adj[c, 2], adj[c, 3], adj[c, 4]
        AJ[p, 0] += a11
        AJ[p, 1] += a12
        AJ[p, 2] += a22
        R = RC[c]
        for g in range(L):
            dR[g] = 0.0
        if sub == SUB_FAMILY:
            for f in range(Fm):
                Fh[f] = 0.0
                dFh[f] = 0.0
            for g in range(L):
                Fh[fam[g]] += R[g] * PL[p, g, E_]
            for f in range(Fm):
                if PF[p, f, F2_] > 0.0:
                    cf, F1, F2 = PF[p, f, CF_], PF[p, f, F1_], PF[p, f, F2_]
                    dFh[f] = -cf * (ah1 * F1 + ah2 * F2) + cf * Fh[f]
                    AF[p, f, 0] += ah1 * Fh[f]
                    AF[p, f, 1] += ah2 * Fh[f]
                    AF[p, f, 2] += 0.5 * Fh[f] * Fh[f]
        if sub != SUB_NONE:
            for g in range(L):
                cg = PL[p, g, C_]
                dR[g] = -cg * (ah1 * PL[p, g, B1_] + ah2 * PL[p, g, W_]) + cg * R[g]
                AL[p, g, 0] += ah1 * R[g]
                AL[p, g, 1] += ah2 * R[g]
                AL[p, g, 2] += 0.5 * R[g] * R[g]
                if sub == SUB_FAMILY:
                    dR[g] += dFh[fam[g]] * PL[p, g, E_]
                    AL[p, g, 3] += dFh[fam[g]] * R[g]
        for k in range(ptr[c], ptr[c + 1]):
            i = t * S + src[k]
            r = ps[k] - pn[k] * mu[i]
            gk = ah1 * lam[i] + ah2 + dR[llm[src[k]]]
            dlam[i] += ah1 * w[i] * r
            dw[i] += gk * r
            dmu[i] -= pn[k] * gk * w[i]
        sev = 0.0
        v = s2e[t]
        for k in range(eptr[c], eptr[c + 1]):
            sev += ern[k] * rho[t * Rn + rater[k]]
            drho[t * Rn + rater[k]] -= ah1 * ern[k] / v
        ds2e[t] -= (a11 * nE[c] + ah1 * (sE[c] - nE[c] * mu_e[t] - sev)) / (v * v)
        dmu_e[t] -= ah1 * nE[c] / v


@kernel
def pattern_back(F, Z, w, lam, t2, tf, PL, PF, AJ, AL, AF, dlam, dw, dt2, dtf, dW, dB1):
    """The patterns' shared quantities, reverse: from the cells' collected adjoints (AJ, AL,
    AF) through the sub-cell latents to the sources' w and λ and to τ²'s."""
    S = Z[M_S]
    ptask, ptr = isec(Z, S_PAT_TASK), isec(Z, S_PAT_PTR)
    src, cnt, llm = isec(Z, S_PAT_SRC), fsec(F, Z, S_PAT_N), isec(Z, S_SRC_LLM)
    fam, ncell = isec(Z, S_LLM_FAM), fsec(F, Z, S_PAT_CELLS)
    sub = Z[M_SUB]
    for p in range(Z[M_P]):
        t, n = ptask[p], ncell[p]
        A11, A12, A22 = AJ[p, 0], AJ[p, 1], AJ[p, 2]
        dW[:] = 0.0
        dB1[:] = 0.0
        if sub == SUB_FAMILY:
            for f in range(PF.shape[1]):
                F1, F2, cf, ef = PF[p, f, F1_], PF[p, f, F2_], PF[p, f, CF_], PF[p, f, EF_]
                if F2 <= 0.0:
                    continue
                H1, H2, QF = AF[p, f, 0], AF[p, f, 1], AF[p, f, 2]
                gcf = -(A11 * F1 * F1 + A12 * F1 * F2 + A22 * F2 * F2) - F1 * H1 - F2 * H2 + QF
                dF1 = -cf * (2.0 * A11 * F1 + A12 * F2) - cf * H1
                dF2 = -cf * (A12 * F1 + 2.0 * A22 * F2) - cf * H2 - 0.5 * cf * n \
                    - gcf * cf * cf
                dtf[t] += gcf * ef * ef - 0.5 * F2 * ef * n
                AF[p, f, 0], AF[p, f, 1] = dF1, dF2  # reused below for the LLMs
            for g in range(PL.shape[1]):
                f = fam[g]
                if PF[p, f, F2_] <= 0.0:
                    continue
                Wg, B, e = PL[p, g, W_], PL[p, g, B1_], PL[p, g, E_]
                dF1, dF2 = AF[p, f, 0], AF[p, f, 1]
                dB1[g] += dF1 * e
                dW[g] += dF2 * e
                de = dF1 * B + dF2 * Wg + AL[p, g, 3]
                dW[g] -= de * t2[t] * e * e
                dt2[t] -= de * Wg * e * e
        if sub != SUB_NONE:
            for g in range(PL.shape[1]):
                Wg, B, c, e = PL[p, g, W_], PL[p, g, B1_], PL[p, g, C_], PL[p, g, E_]
                if Wg <= 0.0:
                    continue
                G1, G2, Q = AL[p, g, 0], AL[p, g, 1], AL[p, g, 2]
                gc = -(A11 * B * B + A12 * B * Wg + A22 * Wg * Wg) - B * G1 - Wg * G2 + Q
                dB1[g] += -c * (2.0 * A11 * B + A12 * Wg) - c * G1
                dW[g] += -c * (A12 * B + 2.0 * A22 * Wg) - c * G2 - 0.5 * c * n - gc * c * c
                dt2[t] += gc * e * e - 0.5 * Wg * e * n
        for k in range(ptr[p], ptr[p + 1]):
            i = t * S + src[k]
            g = llm[src[k]]
            nk, lm = cnt[k], lam[i]
            dlam[i] += 2.0 * A11 * nk * w[i] * lm + A12 * nk * w[i] + dB1[g] * nk * w[i]
            dw[i] += A11 * nk * lm * lm + A12 * nk * lm + A22 * nk + dW[g] * nk \
                + dB1[g] * nk * lm
