"""E1's Student-t likelihood as one fused pass over cell-major ratings, with its gradient.

The PyMC form (``variance_partition._student``) samples one latent b_c per unit×task cell:
the ratings are t(ν, rest_d + b_c, σ_task) and b has the nested Gaussian prior around the
cell's centre (intercept + task effect + reference offset) with unit, transcript and teacher
integrated out. Its graph costs ≈ 41 ms a gradient at reference size (1.1 M ratings) through
per-rating temporaries; here one loop over the ratings, ordered by cell, computes the
log density and every gradient by row sums: per rating a product and a division (the logs
of running products per cell), per cell a sum into its latent, per task the sums that ν's
and σ's derivatives need.

The cell latents' prior is ``kernels._tree`` from the cells up (the same recursion as the
Gaussian form, with every cell's variance σ²_{unit×task}). ``e1_student_logp_grad`` and
``e1_student_expand`` put E1's head (``e1_kernels``) around it; their callbacks live in
``student_callbacks.py``, so a Gaussian fit never compiles any of this.
"""

from __future__ import annotations

import math

import numpy as np

from .e1_kernels import _means, _sigmas, e1_expand, head, head_grad, likelihood_grads
from .e1_layout import H_HEAD, H_NOPS, OP_RESID_MS, S_OPS
from .kernel_cache import kernel
from .kernels import H_E, H_L, H_LEVELS, _log_sum, _parent_grad, _tree, fsec, isec
from .prior_kernels import prior_logp

H_STUDENT = 12  # header slot: first section of the Student-t data (0: Gaussian)
# Sections from Z[H_STUDENT]: rating pointers per cell, ratings (cell-major), their design
# cells, each cell's task, a design cell of its task, its offset composition, the
# compositions' weights, ratings per task, each design cell's task, [x offset of the cell
# latents, x offset of log(ν − 2)], ν − 2's prior, [replicates, design cells per task] of the
# dense layout (empty: the ratings are in the sparse one), the dense layout's mask.
(S_PTR, S_Y, S_DESIGN, S_CTASK, S_CREP, S_CCOMP, S_W, S_TASK_N, S_DTASK, S_X, S_NU, S_DENSE,
 S_MASK) = range(13)
# Reassociation lets LLVM vectorise the dense layout's sums; no assumption about inf or NaN, so
# an overflowing product is still caught.
_VECTOR = {"reassoc", "contract", "arcp"}


@kernel
def digamma(x):
    """ψ(x) for x > 0: recurrence up to 6, then the asymptotic series (error < 1e-13)."""
    r = 0.0
    while x < 6.0:
        r -= 1.0 / x
        x += 1.0
    f = 1.0 / (x * x)
    return r + math.log(x) - 0.5 / x - f * (1.0 / 12 - f * (1.0 / 120 - f * (
        1.0 / 252 - f * (1.0 / 240 - f / 132))))


@kernel
def _offsets(F, Z, o):
    sb = Z[H_STUDENT]
    W, E = fsec(F, Z, sb + S_W), Z[H_E]
    n_comp = len(W) // E if E > 0 else 0
    ocomp = np.zeros(max(n_comp, 1))
    for j in range(n_comp):
        for e in range(E):
            ocomp[j] += W[j * E + e] * o[e]
    return ocomp, n_comp


@kernel
def student_logp_grad(x, F, Z, f, fbase, s2e, s2cell, s2lp, o, grad, df, dfbase, ds2e, ds2lp,
                      do):
    """log p(ratings, cell latents | the rest) plus ν − 2's prior; gradients added into grad
    (the cell latents and log(ν − 2)), df (design means), dfbase (the part of them constant in
    a task: intercept + task effect), ds2e (per task), ds2lp (levels) and do (offsets).
    Returns (log density, d/dσ²_cell)."""
    sb = Z[H_STUDENT]
    ctask, crep, ccomp = isec(Z, sb + S_CTASK), isec(Z, sb + S_CREP), isec(Z, sb + S_CCOMP)
    tn, dtask, xs = fsec(F, Z, sb + S_TASK_N), isec(Z, sb + S_DTASK), isec(Z, sb + S_X)
    bx, nux = xs[0], xs[1]
    C, K, D = len(ctask), len(tn), len(f)
    ocomp, n_comp = _offsets(F, Z, o)
    nm2 = math.exp(x[nux])
    nu = 2.0 + nm2
    lp, dnu = prior_logp(fsec(F, Z, sb + S_NU), nm2)
    lp += x[nux]  # the log transform's Jacobian
    # The cell latents' nested prior around their centres.
    m0 = np.empty(C)
    for c in range(C):
        centre = fbase[crep[c]]
        if n_comp > 0:
            centre += ocomp[ccomp[c]]
        m0[c] = x[bx + c] - centre
    dm0 = np.empty(C)
    if Z[H_L] > 0:
        lp2, ds2cell = _cells_up(F, Z, m0, s2cell, s2lp, dm0, ds2lp)
    else:
        ds0 = np.empty(C)
        lp2 = _tree(F, Z, 0, m0, np.full(C, s2cell), s2lp, dm0, ds0, ds2lp)
        ds2cell = np.sum(ds0)
    lp += lp2
    docomp = np.zeros(max(n_comp, 1))
    for c in range(C):
        grad[bx + c] += dm0[c]
        dfbase[crep[c]] -= dm0[c]
        if n_comp > 0:
            docomp[ccomp[c]] -= dm0[c]
    # The ratings: per rating u = r² / (ν σ²), log(1 + u) and r / (1 + u); the rest by sums.
    rest = np.empty(D)
    for d in range(D):
        rest[d] = f[d] - fbase[d]
    a = np.empty(K)
    for t in range(K):
        a[t] = 1.0 / (nu * s2e[t])
    slog, sw = np.zeros(K), np.zeros(K)
    drest = np.zeros(D)
    if len(isec(Z, sb + S_DENSE)) > 0:
        _ratings_dense(x, F, Z, rest, a, nu, grad, drest, slog, sw)
    else:
        _ratings_sparse(x, F, Z, rest, a, nu, grad, drest, slog, sw)
    half = 0.5 * (nu + 1.0)
    cnu = math.lgamma(half) - math.lgamma(0.5 * nu) - 0.5 * math.log(nu * math.pi)
    dcnu = 0.5 * digamma(half) - 0.5 * digamma(0.5 * nu) - 0.5 / nu
    for t in range(K):
        lp += tn[t] * (cnu - 0.5 * math.log(s2e[t])) - half * slog[t]
        dnu += tn[t] * dcnu - 0.5 * slog[t] + half * sw[t] / nu
        ds2e[t] += -0.5 * tn[t] / s2e[t] + half * sw[t] / s2e[t]
    for d in range(D):
        g = drest[d] * (nu + 1.0) * a[dtask[d]]
        df[d] += g
        dfbase[d] -= g
    grad[nux] += dnu * nm2 + 1.0
    W, E = fsec(F, Z, sb + S_W), Z[H_E]
    for j in range(n_comp):
        for e in range(E):
            do[e] += docomp[j] * W[j * E + e]
    return lp, ds2cell


@kernel
def _cells_up(F, Z, m0, s2cell, s2lp, dm0, ds2lp):
    """The cells' level of the latents' prior (every cell the same variance: one λ, no
    division or log per cell), then ``_tree`` from their parents up. Returns (log density,
    d/dσ²_cell); fills dm0 and ds2lp."""
    lb = Z[H_LEVELS]
    idx0, ppar0, kids = isec(Z, lb), isec(Z, lb + 1), fsec(F, Z, lb + 2)
    n1 = len(ppar0)
    lam = 1.0 / s2cell
    b1 = np.zeros(n1)
    quad = 0.0
    for c in range(len(m0)):
        b1[idx0[c]] += lam * m0[c]
        quad += m0[c] * m0[c]
    lam1 = kids * lam
    lp = 0.5 * len(m0) * math.log(lam) - 0.5 * lam * quad - 0.5 * _log_sum(lam1)
    m1, s1 = np.empty(n1), np.empty(n1)
    for q in range(n1):
        lp += 0.5 * b1[q] ** 2 / lam1[q]
        m1[q] = b1[q] / lam1[q]
        s1[q] = s2lp[ppar0[q]] + 1.0 / lam1[q]
    dm1, ds1 = np.empty(n1), np.empty(n1)
    lp += _tree(F, Z, 1, m1, s1, s2lp, dm1, ds1, ds2lp)
    dlam = 0.5 * len(m0) / lam - 0.5 * quad
    for q in range(n1):
        ds2lp[ppar0[q]] += ds1[q]
        dm1[q], dl = _parent_grad(b1[q], lam1[q], dm1[q], ds1[q])  # now (dB, dΛ)
        dlam += kids[q] * dl
    for c in range(len(m0)):
        db = dm1[idx0[c]]
        dm0[c] = lam * (db - m0[c])
        dlam += db * m0[c]
    return lp, -lam * lam * dlam


@kernel
def _ratings_sparse(x, F, Z, rest, a, nu, grad, drest, slog, sw):
    """Ratings in cell order with their design cells (any design)."""
    sb = Z[H_STUDENT]
    ptr, y, des = isec(Z, sb + S_PTR), fsec(F, Z, sb + S_Y), isec(Z, sb + S_DESIGN)
    ctask, bx = isec(Z, sb + S_CTASK), isec(Z, sb + S_X)[0]
    for c in range(len(ctask)):
        t, bc = ctask[c], x[bx + c]
        at = a[t]
        acc_log, acc_w, acc_g, prod = 0.0, 0.0, 0.0, 1.0
        for i in range(ptr[c], ptr[c + 1]):
            r = y[i] - rest[des[i]] - bc
            u = r * r * at
            v = 1.0 + u
            q = 1.0 / v
            # Σ log(1 + u) as the log of running products: a log per rating was 13 of the
            # 15 ns a rating cost; flushed before the product can overflow.
            if v < 1e100:
                prod *= v
                if prod > 1e100:
                    acc_log += math.log(prod)
                    prod = 1.0
            else:
                acc_log += math.log(v)
            acc_w += u * q
            g = r * q
            drest[des[i]] += g
            acc_g += g
        slog[t] += acc_log + math.log(prod)
        sw[t] += acc_w
        grad[bx + c] += (nu + 1.0) * at * acc_g


@kernel(fastmath=_VECTOR)
def _ratings_dense(x, F, Z, rest, a, nu, grad, drest, slog, sw):
    """Every cell's ratings in a fixed grid (replicate × the design cells of its task, a mask
    of 0 where one is missing): the inner loop is contiguous, so it vectorises."""
    sb = Z[H_STUDENT]
    y, mask = fsec(F, Z, sb + S_Y), fsec(F, Z, sb + S_MASK)
    ctask, bx = isec(Z, sb + S_CTASK), isec(Z, sb + S_X)[0]
    shape = isec(Z, sb + S_DENSE)
    reps, P = shape[0], shape[1]
    S = reps * P
    v = np.empty(S)
    for c in range(len(ctask)):
        t, bc = ctask[c], x[bx + c]
        at = a[t]
        acc_w, acc_g = 0.0, 0.0
        # Slices and one code path (the mask always applied): LLVM vectorises only loops it
        # can see are contiguous and unaliased, and a second branch stopped it (1.6 → 0.9 ns
        # a rating; 0.7 without the mask, not worth a second copy of the loop).
        rt, dr = rest[t * P:(t + 1) * P], drest[t * P:(t + 1) * P]
        for k in range(reps):
            o = c * S + k * P
            yr, vr, mr = y[o:o + P], v[k * P:(k + 1) * P], mask[o:o + P]
            for j in range(P):
                r = (yr[j] - rt[j] - bc) * mr[j]
                u = r * r * at
                vv = 1.0 + u
                q = 1.0 / vv
                vr[j] = vv
                acc_w += u * q
                g = r * q
                dr[j] += g
                acc_g += g
        prod = 1.0
        for j in range(S):
            prod *= v[j]
        if prod < 1e300:
            slog[t] += math.log(prod)
        else:  # the product overflowed: the logs one by one
            for j in range(S):
                slog[t] += math.log(v[j])
        sw[t] += acc_w
        grad[bx + c] += (nu + 1.0) * at * acc_g


@kernel
def residual_mean_square(x, F, Z, f, fbase):
    """The realised mean squared residual given the cell latents (what E1's shares count as
    the residual variance under Student-t), for the trace."""
    sb = Z[H_STUDENT]
    ptr, y, des = isec(Z, sb + S_PTR), fsec(F, Z, sb + S_Y), isec(Z, sb + S_DESIGN)
    ctask, bx = isec(Z, sb + S_CTASK), isec(Z, sb + S_X)[0]
    shape, mask = isec(Z, sb + S_DENSE), fsec(F, Z, sb + S_MASK)
    acc, n = 0.0, 0.0
    if len(shape) > 0:
        reps, P = shape[0], shape[1]
        for c in range(len(ctask)):
            t, bc = ctask[c], x[bx + c]
            for k in range(reps):
                o = c * reps * P + k * P
                for j in range(P):
                    m = mask[o + j]
                    r = (y[o + j] - (f[t * P + j] - fbase[t * P + j]) - bc) * m
                    acc += r * r
                    n += m
        return acc / n
    for c in range(len(ptr) - 1):
        bc = x[bx + c]
        for i in range(ptr[c], ptr[c + 1]):
            r = y[i] - (f[des[i]] - fbase[des[i]]) - bc
            acc += r * r
    return acc / len(y)


@kernel
def e1_student_logp_grad(x, F, Z, grad):
    """log p(x) of E1's PyMC model with the Student-t likelihood, gradient into grad (the
    head is e1_kernels'; kept apart so the Gaussian callbacks do not compile this)."""
    (lp, v, sig2, sig, dv, dsig, dsig2, f, fbase, o, s2e, w, S, tau, dtau, s2sub, s2cp,
     s2lp) = head(x, F, Z, grad)
    df, dfbase, ds2e, ds2sub, ds2cp, ds2lp, do = likelihood_grads(Z, len(s2cp))
    ls, d2c = student_logp_grad(x, F, Z, f, fbase, s2e, s2cp[0], s2lp, o, grad, df, dfbase,
                                ds2e, ds2lp, do)
    ds2cp[0] += d2c
    head_grad(x, F, Z, grad, v, sig2, sig, dv, dsig, dsig2, w, S, tau, dtau, df, dfbase, ds2e,
              ds2sub, ds2cp, ds2lp, do)
    return lp + ls


@kernel
def e1_student_expand(x, F, Z, out):
    """e1_expand's trace values plus the realised mean squared residual."""
    e1_expand(x, F, Z, out)
    ops = isec(Z, Z[H_HEAD] + S_OPS)
    for i in range(Z[H_NOPS]):
        if ops[4 * i] == OP_RESID_MS:
            _, _, sig = _sigmas(x, F, Z)
            f, fbase, _ = _means(x, F, Z, sig)
            out[ops[4 * i + 2]] = residual_mean_square(x, F, Z, f, fbase)
