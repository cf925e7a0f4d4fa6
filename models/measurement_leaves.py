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
    S_BLOCK,
    S_BLOCK_PTR,
    S_CELL_TASK,
    S_ER_N,
    S_ER_PTR,
    S_ER_RATER,
    S_LLM_FAM,
    S_NE,
    S_PAT_CELLS,
    S_PAT_N,
    S_PAT_PTR,
    S_PAT_SRC,
    S_PAT_TASK,
    S_PCELL_PTR,
    S_PCELLS,
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
def pattern_coefficients(F, Z, w, lam, mu, PL, PF, A, K, KR, U):
    """A cell's message from its sums: with r = S − n μ, h1 = Σ w λ r − Σ_LLM U1 R and
    h2 = Σ_LLM U2 R, each LLM's residual R = Σ w r over its run of sources, U1 = c B1 + cf F1 e
    and U2 = 1 − c W − cf F2 e folding in the sub-cell latents. Per (pattern, source) w λ and
    w into A's rows; per pattern Σ w λ n μ into K, per LLM Σ w n μ into KR and U1, U2 into U."""
    S = Z[M_S]
    ptask, ptr = isec(Z, S_PAT_TASK), isec(Z, S_PAT_PTR)
    src, cnt, llm = isec(Z, S_PAT_SRC), fsec(F, Z, S_PAT_N), isec(Z, S_SRC_LLM)
    fam = isec(Z, S_LLM_FAM)
    KR[:] = 0.0
    for p in range(Z[M_P]):
        t = ptask[p]
        k1 = 0.0
        for q in range(ptr[p], ptr[p + 1]):
            i = t * S + src[q]
            A[0, q], A[1, q] = w[i] * lam[i], w[i]
            nm = cnt[q] * mu[i]
            k1 += A[0, q] * nm
            KR[p, llm[src[q]]] += w[i] * nm
        K[p] = k1
        for g in range(PL.shape[1]):
            f = fam[g]
            c, e, cf = PL[p, g, C_], PL[p, g, E_], PF[p, f, CF_]
            U[p, g, 0] = c * PL[p, g, B1_] + cf * PF[p, f, F1_] * e
            U[p, g, 1] = 1.0 - c * PL[p, g, W_] - cf * PF[p, f, F2_] * e


@kernel(fastmath={"reassoc", "contract"})
def leaves(F, Z, mu_e, rho, s2e, PJ, PL, PF, A, K, KR, U, msg, RB):
    """Every cell's message (J11, J12, J22, h1, h2) into msg, each LLM's residual R into RB
    (LLMs × cells in pattern order, for the reverse pass); returns the sub-cell latents' log
    constants summed. Pattern by pattern, down its block's contiguous columns: each source's
    sums over the pattern's cells times w λ into h1 and times w into its LLM's R, then the
    per-LLM coefficients, all vectorised over the cells."""
    Rn, sub = Z[M_R], Z[M_SUB]
    ctask = isec(Z, S_CELL_TASK)
    pcptr, pcells = isec(Z, S_PCELL_PTR), isec(Z, S_PCELLS)
    bptr, blk = isec(Z, S_BLOCK_PTR), fsec(F, Z, S_BLOCK)
    pptr, src, llm, fam = isec(Z, S_PAT_PTR), isec(Z, S_PAT_SRC), isec(Z, S_SRC_LLM), \
        isec(Z, S_LLM_FAM)
    eptr, rater, ern = isec(Z, S_ER_PTR), isec(Z, S_ER_RATER), fsec(F, Z, S_ER_N)
    nE, sE = fsec(F, Z, S_NE), fsec(F, Z, S_SE)
    L, Fm = PL.shape[1], PF.shape[1]
    nmax = 1
    for p in range(Z[M_P]):
        nmax = max(nmax, pcptr[p + 1] - pcptr[p])
    h1, h2, ex, fh = np.empty(nmax), np.empty(nmax), np.empty(nmax), np.empty(nmax)
    total = 0.0
    for p in range(Z[M_P]):
        c0, n = pcptr[p], pcptr[p + 1] - pcptr[p]
        q0, m = pptr[p], pptr[p + 1] - pptr[p]
        for k in range(n):
            h1[k] = -K[p]
            h2[k] = 0.0
            ex[k] = PJ[p, 3]
        for g in range(L):
            R = RB[g, c0:c0 + n]
            R[:] = -KR[p, g]
        for j in range(m):
            col = blk[bptr[p] + j * n:bptr[p] + (j + 1) * n]
            a, b = A[0, q0 + j], A[1, q0 + j]
            R = RB[llm[src[q0 + j]], c0:c0 + n]
            for k in range(n):
                h1[k] += a * col[k]
                R[k] += b * col[k]
        for g in range(L):
            R = RB[g, c0:c0 + n]
            u1, u2, cg = U[p, g, 0], U[p, g, 1], 0.5 * PL[p, g, C_]
            for k in range(n):
                h1[k] -= u1 * R[k]
                h2[k] += u2 * R[k]
                ex[k] += cg * R[k] * R[k]
        if sub == SUB_FAMILY:
            for f in range(Fm):
                fh[:n] = 0.0
                for g in range(L):
                    if fam[g] == f:
                        R, e = RB[g, c0:c0 + n], PL[p, g, E_]
                        for k in range(n):
                            fh[k] += e * R[k]
                cf = 0.5 * PF[p, f, CF_]
                for k in range(n):
                    ex[k] += cf * fh[k] * fh[k]
        for k in range(n):
            c = pcells[c0 + k]
            t = ctask[c]
            sev = 0.0
            for i in range(eptr[c], eptr[c + 1]):
                sev += ern[i] * rho[t * Rn + rater[i]]
            msg[c, 0] = PJ[p, 0] + nE[c] / s2e[t]
            msg[c, 1], msg[c, 2] = PJ[p, 1], PJ[p, 2]
            msg[c, 3] = h1[k] + (sE[c] - nE[c] * mu_e[t] - sev) / s2e[t]
            msg[c, 4] = h2[k]
            total += ex[k]
    return total


@kernel(fastmath={"reassoc", "contract"})
def leaves_back(F, Z, mu_e, rho, s2e, adj, RB, PL, PF, U, AJ, AL, AF, Y, dmu_e, drho, ds2e):
    """``leaves``' reverse pass from the adjoints of every cell's message (adj; each cell's
    constant's is 1), pattern by pattern: into AJ the cells' adjoints of J and of h1 summed,
    into AL and AF per LLM and family what the coefficients and quadratic terms need, into Y
    per (pattern, source) its sums weighted by the adjoints of h1 and of its LLM's R (dot
    products down the block's columns); the experts' part straight into their gradients.
    ``pattern_back`` finishes."""
    Rn, sub = Z[M_R], Z[M_SUB]
    ctask = isec(Z, S_CELL_TASK)
    pcptr, pcells = isec(Z, S_PCELL_PTR), isec(Z, S_PCELLS)
    bptr, blk = isec(Z, S_BLOCK_PTR), fsec(F, Z, S_BLOCK)
    pptr, src, llm, fam = isec(Z, S_PAT_PTR), isec(Z, S_PAT_SRC), isec(Z, S_SRC_LLM), \
        isec(Z, S_LLM_FAM)
    eptr, rater, ern = isec(Z, S_ER_PTR), isec(Z, S_ER_RATER), fsec(F, Z, S_ER_N)
    nE, sE = fsec(F, Z, S_NE), fsec(F, Z, S_SE)
    L, Fm = PL.shape[1], PF.shape[1]
    nmax = 1
    for p in range(Z[M_P]):
        nmax = max(nmax, pcptr[p + 1] - pcptr[p])
    g1, g2, fh = np.empty(nmax), np.empty(nmax), np.empty(nmax)
    dR = np.empty((L, nmax))
    for p in range(Z[M_P]):
        c0, n = pcptr[p], pcptr[p + 1] - pcptr[p]
        q0, m = pptr[p], pptr[p + 1] - pptr[p]
        a11 = a12 = a22 = s1 = 0.0
        for k in range(n):
            c = pcells[c0 + k]
            a11 += adj[c, 0]
            a12 += adj[c, 1]
            a22 += adj[c, 2]
            g1[k], g2[k] = adj[c, 3], adj[c, 4]
            s1 += g1[k]
        AJ[p, 0], AJ[p, 1], AJ[p, 2], AJ[p, 3] = a11, a12, a22, s1
        for g in range(L):
            R, d = RB[g, c0:c0 + n], dR[g, :n]
            u1, u2, cg = U[p, g, 0], U[p, g, 1], PL[p, g, C_]
            x0 = x1 = x2 = 0.0
            for k in range(n):
                d[k] = -u1 * g1[k] + u2 * g2[k] + cg * R[k]
                x0 += g1[k] * R[k]
                x1 += g2[k] * R[k]
                x2 += R[k] * R[k]
            AL[p, g, 0], AL[p, g, 1], AL[p, g, 2] = x0, x1, 0.5 * x2
        if sub == SUB_FAMILY:
            for f in range(Fm):
                fh[:n] = 0.0
                for g in range(L):
                    if fam[g] == f:
                        R, e = RB[g, c0:c0 + n], PL[p, g, E_]
                        for k in range(n):
                            fh[k] += e * R[k]
                cf = PF[p, f, CF_]
                q = 0.0
                for k in range(n):
                    q += fh[k] * fh[k]
                    fh[k] *= cf  # now the adjoint of Fh
                AF[p, f, 0] = 0.5 * q
                for g in range(L):
                    if fam[g] == f:
                        R, d, e = RB[g, c0:c0 + n], dR[g, :n], PL[p, g, E_]
                        x3 = 0.0
                        for k in range(n):
                            d[k] += e * fh[k]
                            x3 += fh[k] * R[k]
                        AL[p, g, 3] = x3
        for g in range(L):
            d = dR[g, :n]
            x4 = 0.0
            for k in range(n):
                x4 += d[k]
            AL[p, g, 4] = x4
        for j in range(m):
            col = blk[bptr[p] + j * n:bptr[p] + (j + 1) * n]
            d = dR[llm[src[q0 + j]], :n]
            y1 = y3 = 0.0
            for k in range(n):
                y1 += g1[k] * col[k]
                y3 += d[k] * col[k]
            Y[0, q0 + j], Y[1, q0 + j] = y1, y3
    for c in range(Z[M_C]):
        t = ctask[c]
        ah1 = adj[c, 3]
        sev = 0.0
        v = s2e[t]
        for i in range(eptr[c], eptr[c + 1]):
            sev += ern[i] * rho[t * Rn + rater[i]]
            drho[t * Rn + rater[i]] -= ah1 * ern[i] / v
        ds2e[t] -= (adj[c, 0] * nE[c] + ah1 * (sE[c] - nE[c] * mu_e[t] - sev)) / (v * v)
        dmu_e[t] -= ah1 * nE[c] / v


@kernel
def pattern_back(F, Z, w, lam, mu, t2, tf, PL, PF, A, AJ, AL, AF, Y, dmu, dlam, dw, dt2, dtf):
    """The patterns' shared quantities, reverse: from the cells' collected adjoints through
    the coefficients, the sub-cell latents and J to the sources' μ, λ, w and to the τ²'s."""
    S = Z[M_S]
    ptask, ptr = isec(Z, S_PAT_TASK), isec(Z, S_PAT_PTR)
    src, cnt, llm = isec(Z, S_PAT_SRC), fsec(F, Z, S_PAT_N), isec(Z, S_SRC_LLM)
    fam, ncell = isec(Z, S_LLM_FAM), fsec(F, Z, S_PAT_CELLS)
    sub = Z[M_SUB]
    L, Fm = PL.shape[1], PF.shape[1]
    dW, dB1, dc, de = np.empty(L), np.empty(L), np.empty(L), np.empty(L)
    dF1, dF2, dcf = np.empty(Fm), np.empty(Fm), np.empty(Fm)
    for p in range(Z[M_P]):
        t, n = ptask[p], ncell[p]
        A11, A12, A22, SA1 = AJ[p, 0], AJ[p, 1], AJ[p, 2], AJ[p, 3]
        dF1[:] = 0.0
        dF2[:] = 0.0
        dcf[:] = 0.0
        # Through the coefficients: X = Σ over cells of (adjoint × residual).
        for q in range(ptr[p], ptr[p + 1]):
            i = t * S + src[q]
            g = llm[src[q]]
            nm = cnt[q] * mu[i]
            SR = AL[p, g, 4]
            x1, x3 = Y[0, q] - nm * SA1, Y[1, q] - nm * SR
            dmu[i] -= cnt[q] * (A[0, q] * SA1 + w[i] * SR)
            dlam[i] += x1 * w[i]
            dw[i] += x1 * lam[i] + x3
        for g in range(L):
            f = fam[g]
            c, e, cf = PL[p, g, C_], PL[p, g, E_], PF[p, f, CF_]
            B, Wg, F1, F2 = PL[p, g, B1_], PL[p, g, W_], PF[p, f, F1_], PF[p, f, F2_]
            dU1, dU2 = -AL[p, g, 0], AL[p, g, 1]
            dc[g] = dU1 * B - dU2 * Wg
            dB1[g] = dU1 * c
            dW[g] = -dU2 * c
            de[g] = cf * (dU1 * F1 - dU2 * F2)
            dcf[f] += e * (dU1 * F1 - dU2 * F2)
            dF1[f] += dU1 * cf * e
            dF2[f] -= dU2 * cf * e
        if sub == SUB_FAMILY:
            for f in range(Fm):
                F1, F2, cf, ef = PF[p, f, F1_], PF[p, f, F2_], PF[p, f, CF_], PF[p, f, EF_]
                if F2 <= 0.0:
                    continue
                dcf[f] += -(A11 * F1 * F1 + A12 * F1 * F2 + A22 * F2 * F2) + AF[p, f, 0]
                dF1[f] += -cf * (2.0 * A11 * F1 + A12 * F2)
                dF2[f] += -cf * (A12 * F1 + 2.0 * A22 * F2) - 0.5 * cf * n - dcf[f] * cf * cf
                dtf[t] += dcf[f] * ef * ef - 0.5 * F2 * ef * n
            for g in range(L):
                f = fam[g]
                if PF[p, f, F2_] <= 0.0:
                    continue
                e = PL[p, g, E_]
                dB1[g] += dF1[f] * e
                dW[g] += dF2[f] * e
                de[g] += dF1[f] * PL[p, g, B1_] + dF2[f] * PL[p, g, W_] + AL[p, g, 3]
        if sub != SUB_NONE:
            for g in range(L):
                Wg, B, c, e = PL[p, g, W_], PL[p, g, B1_], PL[p, g, C_], PL[p, g, E_]
                if Wg <= 0.0:
                    continue
                dc[g] += -(A11 * B * B + A12 * B * Wg + A22 * Wg * Wg) + AL[p, g, 2]
                dB1[g] += -c * (2.0 * A11 * B + A12 * Wg)
                dW[g] += -c * (A12 * B + 2.0 * A22 * Wg) - 0.5 * c * n - dc[g] * c * c \
                    - de[g] * t2[t] * e * e
                dt2[t] += dc[g] * e * e - de[g] * Wg * e * e - 0.5 * Wg * e * n
        for q in range(ptr[p], ptr[p + 1]):
            i = t * S + src[q]
            g = llm[src[q]]
            nk, lm = cnt[q], lam[i]
            dlam[i] += 2.0 * A11 * nk * w[i] * lm + A12 * nk * w[i] + dB1[g] * nk * w[i]
            dw[i] += A11 * nk * lm * lm + A12 * nk * lm + A22 * nk + dW[g] * nk \
                + dB1[g] * nk * lm
