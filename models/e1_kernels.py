"""E1's log density, its gradient and its trace values as compiled kernels (the fast path).

The model is ``variance_partition.py``'s, parameter for parameter: the free vector has the PyMC
model's layout (its value variables in order), the priors are PyMC's densities. The *head*
(σ's, effects, residual variances: ``head`` forward, ``head_grad`` back) is shared; the
Gaussian likelihood is ``gaussian_kernels.gaussian_logp_grad`` (``e1_logp_grad`` here), the
Student-t one ``student_kernels.e1_student_logp_grad``. What changes between data sets (sizes,
bases, design matrices, priors, the data) is in F and Z (``fast_e1.py`` writes them); the code
here is compiled once and cached on disk.

The pieces of the free vector are *blocks*: coordinates with a Normal(0, σ_c) prior (centred),
Normal(0, 1) scaled by σ_c (non-centred) or a prior of their own (the intercept), mapped
linearly into the design-cell means (matrix M, D × n) or into the reference offsets (basis G).
"""

from __future__ import annotations

import math

import numpy as np

from .e1_layout import (
    BLOCK,
    CENTRED,
    H_BUDGET,
    H_HEAD,
    H_K,
    H_NA,
    H_NB,
    H_NCOMP,
    H_NOPS,
    H_RES,
    H_TAU,
    H_ZRES,
    NON_CENTRED,
    OP_COPY,
    OP_EFFECT,
    OP_EXP,
    OP_RES_LOG_SD,
    OP_RES_SD,
    OP_RESID_MS,
    OP_SIGMA,
    OP_TOTAL,
    OWN_PRIOR,
    S_AGG,
    S_AGG_A,
    S_AGG_M,
    S_BLOCKS,
    S_CELLC,
    S_COMPX,
    S_CPRIOR,
    S_DIRC,
    S_KAPPA,
    S_LEVC,
    S_OPS,
    S_RESC,
    S_SHARE_B,
    S_SUBC,
    S_TAU,
    S_TBASIS,
    S_TOTAL,
    S_TWEIGHT,
    TO_BASE,
    TO_OFFSETS,
)
from .gaussian_kernels import gaussian_logp_grad
from .kernel_cache import kernel
from .kernels import H_D, H_E, H_G, H_J, LOG_2PI, fsec, isec
from .prior_kernels import prior_logp


@kernel
def _sigmas(x, F, Z):
    nc, h = Z[H_NCOMP], Z[H_HEAD]
    cx, kappa = isec(Z, h + S_COMPX), fsec(F, Z, h + S_KAPPA)
    v, sig2, sig = np.empty(nc), np.empty(nc), np.empty(nc)
    for c in range(nc):
        if Z[H_BUDGET] == 1:
            v[c] = math.exp(x[cx[c]])
            sig2[c] = v[c] / kappa[c]
            sig[c] = math.sqrt(sig2[c])
        else:
            sig[c] = math.exp(x[cx[c]])
            sig2[c] = sig[c] * sig[c]
            v[c] = sig2[c] * kappa[c]
    return v, sig2, sig


@kernel
def _budget(v, F, Z, dv):
    """The variance budget's log density on the variances (e1_priors.budget_logp), its
    gradient added into dv."""
    nc, h, na = Z[H_NCOMP], Z[H_HEAD], Z[H_NA]
    agg, agg_a, b = isec(Z, h + S_AGG), fsec(F, Z, h + S_AGG_A), fsec(F, Z, h + S_SHARE_B)
    dirc, agg_m = fsec(F, Z, h + S_DIRC), isec(Z, h + S_AGG_M)
    W = 0.0
    V = np.zeros(na)
    for c in range(nc):
        W += v[c]
        V[agg[c]] += v[c]
    lt, dt = prior_logp(fsec(F, Z, h + S_TOTAL), math.sqrt(W))
    lp = lt - math.log(2.0 * math.sqrt(W))
    dW = dt / (2.0 * math.sqrt(W)) - 0.5 / W
    dV = np.zeros(na)
    if na > 1:
        lp += dirc[0] - (na - 1) * math.log(W)
        dW -= (na - 1) / W
        for a in range(na):
            lp += (agg_a[a] - 1.0) * (math.log(V[a]) - math.log(W))
            dV[a] += (agg_a[a] - 1.0) / V[a]
            dW -= (agg_a[a] - 1.0) / W
    for a in range(na):
        if agg_m[a] > 1:
            lp += dirc[1 + a] - (agg_m[a] - 1) * math.log(V[a])
            dV[a] -= (agg_m[a] - 1) / V[a]
    for c in range(nc):
        a = agg[c]
        if agg_m[a] > 1:
            lp += (b[c] - 1.0) * (math.log(v[c]) - math.log(V[a]))
            dv[c] += (b[c] - 1.0) / v[c]
            dV[a] -= (b[c] - 1.0) / V[a]
    for c in range(nc):
        dv[c] += dW + dV[agg[c]]
    return lp


@kernel
def _residuals(x, F, Z, sig2):
    """Residual variance per task around σ_residual² (variance_partition._residual_variances):
    (s2e, u, w, Σ tw w, τ)."""
    K, h = Z[H_K], Z[H_HEAD]
    res = Z[H_RES]
    if K <= 1:  # one residual variance per group, each a component of its own
        resc = isec(Z, h + S_RESC)
        s2e = np.empty(len(resc))
        for g in range(len(resc)):
            s2e[g] = sig2[resc[g]]
        return s2e, np.zeros(1), np.ones(1), 1.0, 1.0
    basis, tw = fsec(F, Z, h + S_TBASIS), fsec(F, Z, h + S_TWEIGHT)
    z = x[Z[H_ZRES]:Z[H_ZRES] + K - 1]
    u, w = np.zeros(K), np.empty(K)
    S = 0.0
    for k in range(K):
        for j in range(K - 1):
            u[k] += basis[k * (K - 1) + j] * z[j]
        w[k] = math.exp(2.0 * u[k])
        S += tw[k] * w[k]
    return sig2[res] * w / S, u, w, S, math.exp(x[Z[H_TAU]])


@kernel
def _block(x, F, Z, b, sig):
    """A block's contribution: (vector in its target's space, the block's scale)."""
    blocks = isec(Z, Z[H_HEAD] + S_BLOCKS)
    xo, n, comp, kind = blocks[b * BLOCK], blocks[b * BLOCK + 1], blocks[b * BLOCK + 2], \
        blocks[b * BLOCK + 3]
    msec, gsec, target = blocks[b * BLOCK + 4], blocks[b * BLOCK + 5], blocks[b * BLOCK + 6]
    mat = fsec(F, Z, gsec if target == TO_OFFSETS else msec)
    rows = len(mat) // n
    out = np.zeros(rows)
    for r in range(rows):
        for j in range(n):
            out[r] += mat[r * n + j] * x[xo + j]
    scale = sig[comp] if kind == NON_CENTRED else 1.0
    return out * scale, mat, rows


@kernel
def _means(x, F, Z, sig):
    """(design-cell means, their base part, offsets) from the blocks."""
    D, E = Z[H_D], Z[H_E]
    blocks = isec(Z, Z[H_HEAD] + S_BLOCKS)
    f, fbase, o = np.zeros(D), np.zeros(D), np.zeros(max(E, 1))
    for b in range(Z[H_NB]):
        val, _, _ = _block(x, F, Z, b, sig)
        target = blocks[b * BLOCK + 6]
        if target == TO_OFFSETS:
            o[:E] += val
        else:
            f += val
            if target == TO_BASE:
                fbase += val
    return f, fbase, o


@kernel
def head(x, F, Z, grad):
    """The head's forward pass: the σ's and their priors, the effects' priors, the design-cell
    means, offsets and residual variances the likelihood takes. Returns the log density so
    far, the likelihood's inputs and what ``head_grad`` needs."""
    nc, h, nb = Z[H_NCOMP], Z[H_HEAD], Z[H_NB]
    J = Z[H_J]
    grad[:] = 0.0
    v, sig2, sig = _sigmas(x, F, Z)
    dv, dsig, dsig2 = np.zeros(nc), np.zeros(nc), np.zeros(nc)
    lp = 0.0
    cx = isec(Z, h + S_COMPX)
    if Z[H_BUDGET] == 1:
        lp += _budget(v, F, Z, dv)
        for c in range(nc):
            lp += x[cx[c]]  # the Jacobian of sampling log v
    else:
        cp = fsec(F, Z, h + S_CPRIOR)
        for c in range(nc):
            lc, d = prior_logp(cp[4 * c:4 * c + 4], sig[c])
            lp += lc + x[cx[c]]
            dsig[c] += d
    blocks = isec(Z, h + S_BLOCKS)
    for b in range(nb):
        xo, n, comp, kind = blocks[b * BLOCK], blocks[b * BLOCK + 1], blocks[b * BLOCK + 2], \
            blocks[b * BLOCK + 3]
        if kind == OWN_PRIOR:
            for j in range(n):
                lb, d = prior_logp(fsec(F, Z, comp), x[xo + j])
                lp += lb
                grad[xo + j] += d
        elif kind == CENTRED:
            s = sig[comp]
            for j in range(n):
                z = x[xo + j]
                lp += -0.5 * LOG_2PI - math.log(s) - 0.5 * z * z / (s * s)
                grad[xo + j] -= z / (s * s)
                dsig[comp] += -1.0 / s + z * z / (s * s * s)
        else:
            for j in range(n):
                z = x[xo + j]
                lp += -0.5 * LOG_2PI - 0.5 * z * z
                grad[xo + j] -= z
    f, fbase, o = _means(x, F, Z, sig)
    K = Z[H_K]
    s2e, u, w, S, tau = _residuals(x, F, Z, sig2)
    dtau = 0.0
    if K > 1:
        lt, dt = prior_logp(fsec(F, Z, h + S_TAU), tau)
        lp += lt + x[Z[H_TAU]]
        dtau = dt
        zo = Z[H_ZRES]
        for j in range(K - 1):
            z = x[zo + j]
            lp += -0.5 * LOG_2PI - math.log(tau) - 0.5 * z * z / (tau * tau)
            grad[zo + j] -= z / (tau * tau)
            dtau += -1.0 / tau + z * z / (tau ** 3)
    levc, subc = isec(Z, h + S_LEVC), isec(Z, h + S_SUBC)
    s2sub = np.empty(max(J, 1))
    for j in range(J):
        s2sub[j] = sig2[subc[j]]
    s2lp = np.empty(max(len(levc), 1))
    for q in range(len(levc)):
        s2lp[q] = sig2[levc[q]]
    cellc = isec(Z, h + S_CELLC)
    s2cp = np.zeros(len(cellc))
    for q in range(len(cellc)):
        if cellc[q] >= 0:
            s2cp[q] = sig2[cellc[q]]
    return (lp, v, sig2, sig, dv, dsig, dsig2, f, fbase, o, s2e, w, S, tau, dtau, s2sub, s2cp,
            s2lp)


@kernel
def likelihood_grads(Z, n_cell):
    """Zeroed gradient arrays of the likelihood's inputs: (df, dfbase, ds2e, ds2sub, ds2cp,
    ds2lp, do)."""
    D, G, J, E = Z[H_D], Z[H_G], Z[H_J], Z[H_E]
    levc = isec(Z, Z[H_HEAD] + S_LEVC)
    return (np.zeros(D), np.zeros(D), np.zeros(G), np.zeros(max(J, 1)), np.zeros(n_cell),
            np.zeros(max(len(levc), 1)), np.zeros(max(E, 1)))


@kernel
def head_grad(x, F, Z, grad, v, sig2, sig, dv, dsig, dsig2, w, S, tau, dtau, df, dfbase, ds2e,
              ds2sub, ds2cp, ds2lp, do):
    """The head's reverse pass from the likelihood's gradient (into grad)."""
    nc, h, nb = Z[H_NCOMP], Z[H_HEAD], Z[H_NB]
    J, K = Z[H_J], Z[H_K]
    cx, blocks = isec(Z, h + S_COMPX), isec(Z, h + S_BLOCKS)
    levc, subc, cellc = isec(Z, h + S_LEVC), isec(Z, h + S_SUBC), isec(Z, h + S_CELLC)
    res = Z[H_RES]
    if K > 1:
        tw, basis = fsec(F, Z, h + S_TWEIGHT), fsec(F, Z, h + S_TBASIS)
        acc = 0.0
        for k in range(K):
            dsig2[res] += ds2e[k] * w[k] / S
            acc += ds2e[k] * sig2[res] * w[k]
        zo = Z[H_ZRES]
        for k in range(K):
            dw = sig2[res] * ds2e[k] / S - acc / (S * S) * tw[k]
            du = 2.0 * w[k] * dw
            for j in range(K - 1):
                grad[zo + j] += basis[k * (K - 1) + j] * du
        grad[Z[H_TAU]] += dtau * tau + 1.0
    else:
        resc = isec(Z, h + S_RESC)
        for g in range(len(resc)):
            dsig2[resc[g]] += ds2e[g]
    for j in range(J):
        dsig2[subc[j]] += ds2sub[j]
    for q in range(len(levc)):
        dsig2[levc[q]] += ds2lp[q]
    for q in range(len(cellc)):
        if cellc[q] >= 0:
            dsig2[cellc[q]] += ds2cp[q]
    for b in range(nb):
        xo, n, comp, kind = blocks[b * BLOCK], blocks[b * BLOCK + 1], blocks[b * BLOCK + 2], \
            blocks[b * BLOCK + 3]
        _, mat, rows = _block(x, F, Z, b, sig)
        target = blocks[b * BLOCK + 6]
        up = do if target == TO_OFFSETS else (df + dfbase if target == TO_BASE else df)
        scale = sig[comp] if kind == NON_CENTRED else 1.0
        for j in range(n):
            d = 0.0
            for r in range(rows):
                d += mat[r * n + j] * up[r]
            grad[xo + j] += scale * d
            if kind == NON_CENTRED:
                dsig[comp] += x[xo + j] * d
    for c in range(nc):
        total = dsig2[c] + dsig[c] / (2.0 * sig[c])
        if Z[H_BUDGET] == 1:
            grad[cx[c]] += (total / fsec(F, Z, h + S_KAPPA)[c] + dv[c]) * v[c] + 1.0
        else:
            grad[cx[c]] += total * 2.0 * sig2[c] + 1.0


@kernel
def e1_logp_grad(x, F, Z, grad):
    """log p(x) of E1's PyMC model with the Gaussian likelihood (up to nothing: the same
    constants), gradient into grad."""
    (lp, v, sig2, sig, dv, dsig, dsig2, f, fbase, o, s2e, w, S, tau, dtau, s2sub, s2cp,
     s2lp) = head(x, F, Z, grad)
    df, dfbase, ds2e, ds2sub, ds2cp, ds2lp, do = likelihood_grads(Z, len(s2cp))
    lp += gaussian_logp_grad(F, Z, f, s2e, s2sub, s2cp, s2lp, o, df, ds2e, ds2sub, ds2cp,
                             ds2lp, do)
    head_grad(x, F, Z, grad, v, sig2, sig, dv, dsig, dsig2, w, S, tau, dtau, df, dfbase, ds2e,
              ds2sub, ds2cp, ds2lp, do)
    return lp


@kernel
def e1_expand(x, F, Z, out):
    """The trace values nutpie stores: the free vector, then every other variable of the PyMC
    model's posterior (ops table, in its order)."""
    ops = isec(Z, Z[H_HEAD] + S_OPS)
    v, sig2, sig = _sigmas(x, F, Z)
    s2e, u, _, _, _ = _residuals(x, F, Z, sig2)
    for i in range(Z[H_NOPS]):
        op, arg, at, size = ops[4 * i], ops[4 * i + 1], ops[4 * i + 2], ops[4 * i + 3]
        if op == OP_COPY:
            out[at:at + size] = x[arg:arg + size]
        elif op == OP_EXP:
            for j in range(size):
                out[at + j] = math.exp(x[arg + j])
        elif op == OP_TOTAL:
            out[at] = math.sqrt(np.sum(v))
        elif op == OP_SIGMA:
            out[at] = sig[arg]
        elif op == OP_EFFECT:
            val, _, _ = _block_effect(x, F, Z, arg, sig)
            out[at:at + size] = val
        elif op == OP_RES_LOG_SD:
            out[at:at + size] = u[:size]
        elif op == OP_RESID_MS:
            pass  # Student-t's, filled by student_kernels.e1_student_expand
        elif op == OP_RES_SD:
            out[at:at + size] = np.sqrt(s2e[:size])


@kernel
def _block_effect(x, F, Z, b, sig):
    """A block's effect on its own dims (basis G times the coordinates, times σ if
    non-centred)."""
    blocks = isec(Z, Z[H_HEAD] + S_BLOCKS)
    xo, n, comp, kind = blocks[b * BLOCK], blocks[b * BLOCK + 1], blocks[b * BLOCK + 2], \
        blocks[b * BLOCK + 3]
    mat = fsec(F, Z, blocks[b * BLOCK + 5])
    rows = len(mat) // n
    out = np.zeros(rows)
    for r in range(rows):
        for j in range(n):
            out[r] += mat[r * n + j] * x[xo + j]
    return out * (sig[comp] if kind == NON_CENTRED else 1.0), mat, rows
