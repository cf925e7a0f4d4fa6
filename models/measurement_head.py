"""The joint measurement model's head as compiled kernels: the free vector (the PyMC model's,
in its layout) through the priors and transforms to the per-task arrays the likelihood takes
(``measurement_kernels.py``), and back; the trace values nutpie stores.

Two kinds of free variables: *prior variables* (one value, or one per task, with a prior of
their own on the natural scale, sampled on PyMC's transform of it: identity, log, interval)
and *effect blocks* (zero-sum effects as an orthonormal basis times coordinates per task,
Normal(0, σ) centred or σ × Normal(0, 1)), mapped onto the sources' intercepts, log loadings,
log noise SDs or the raters' severities. Which variable plays which part is the roles table
``fast_measurement.py`` writes.
"""

from __future__ import annotations

import math

import numpy as np

from .kernel_cache import kernel
from .kernels import LOG_2PI, fsec, isec
from .measurement_kernels import measurement_logp_grad
from .measurement_layout import (
    BLOCK,
    M_HEAD,
    M_NBLK,
    M_NOPS,
    M_NVAR,
    M_R,
    M_S,
    M_T,
    OP_COPY,
    OP_EFFECT,
    OP_NAT,
    OP_RHO_Q,
    OP_SOURCE,
    R_LAM_MEAN,
    R_LOGN_MEAN,
    R_MU_E,
    R_MU_LLM,
    R_Q_CELL,
    R_SIG_EXP,
    R_TAU_FAM,
    R_TAU_LLM,
    R_VA_NU0,
    R_VA_RHOS,
    R_VA_ROOM,
    R_VA_SD,
    S_BLOCKS,
    S_OPS,
    S_ROLES,
    S_VARS,
    T_IDENTITY,
    T_LOG,
    TO_LAMBDA,
    TO_LOG_NOISE,
    TO_MU,
    UNIFORM,
    VAR,
)
from .prior_kernels import prior_logp


@kernel
def _transform(tr, spec, y):
    """(natural value, its derivative in y, log Jacobian, its derivative in y)."""
    if tr == T_IDENTITY:
        return y, 1.0, 0.0, 0.0
    if tr == T_LOG:
        v = math.exp(y)
        return v, v, y, 1.0
    lo, hi = spec[4], spec[5]
    s = 1.0 / (1.0 + math.exp(-y)) if y >= 0 else math.exp(y) / (1.0 + math.exp(y))
    sp = math.log1p(math.exp(-abs(y))) + max(-y, 0.0)  # softplus(−y)
    return lo + (hi - lo) * s, (hi - lo) * s * (1.0 - s), math.log(hi - lo) - 2.0 * sp - y, \
        1.0 - 2.0 * s


@kernel
def _naturals(x, F, Z, grad):
    """Every prior variable's natural value per task (scalars repeated), d value / d y, and
    the priors' log density with their Jacobians (gradient into grad)."""
    T, nv = Z[M_T], Z[M_NVAR]
    table = isec(Z, Z[M_HEAD] + S_VARS)
    nat, dval = np.zeros(max(nv, 1) * T), np.zeros(max(nv, 1) * T)
    lp = 0.0
    for v in range(nv):
        xo, size, tr = table[VAR * v], table[VAR * v + 1], table[VAR * v + 2]
        spec = fsec(F, Z, table[VAR * v + 3])
        for j in range(size):
            val, dv, jac, djac = _transform(tr, spec, x[xo + j])
            if spec[0] == UNIFORM:
                lpp, dp = -math.log(spec[2] - spec[1]), 0.0
            else:
                lpp, dp = prior_logp(spec, val)
            lp += lpp + jac
            grad[xo + j] += dp * dv + djac
            if size == 1:
                for t in range(T):
                    nat[v * T + t], dval[v * T + t] = val, dv
            else:
                nat[v * T + j], dval[v * T + j] = val, dv
    return lp, nat, dval


@kernel
def _get(nat, roles, role, t, T, default):
    v = roles[role]
    return nat[v * T + t] if v >= 0 else default


@kernel
def _effect(x, F, Z, b, t, nat):
    """Block b's effect in task t on its own rows (basis × coordinates, × σ if non-centred)."""
    T = Z[M_T]
    blk = isec(Z, Z[M_HEAD] + S_BLOCKS)
    xo, nb, sv, centred = blk[BLOCK * b], blk[BLOCK * b + 1], blk[BLOCK * b + 2], \
        blk[BLOCK * b + 3]
    basis = fsec(F, Z, blk[BLOCK * b + 4])
    rows = len(basis) // nb
    scale = 1.0 if centred == 1 else nat[sv * T + t]
    out = np.zeros(rows)
    for r in range(rows):
        acc = 0.0
        for j in range(nb):
            acc += basis[r * nb + j] * x[xo + t * nb + j]
        out[r] = acc * scale
    return out


@kernel
def _inputs(x, F, Z, grad):
    """The head forward: the priors' log density (gradient into grad) and the likelihood's
    per-task inputs."""
    T, S, R = Z[M_T], Z[M_S], Z[M_R]
    roles, blk = isec(Z, Z[M_HEAD] + S_ROLES), isec(Z, Z[M_HEAD] + S_BLOCKS)
    lp, nat, dval = _naturals(x, F, Z, grad)
    dnat = np.zeros(len(nat))
    targets = np.zeros((4, T * max(S, R, 1)))
    for t in range(T):
        for s in range(S):
            targets[TO_MU, t * S + s] = _get(nat, roles, R_MU_LLM, t, T, 0.0)
            targets[TO_LAMBDA, t * S + s] = math.log(_get(nat, roles, R_LAM_MEAN, t, T, 1.0))
            targets[TO_LOG_NOISE, t * S + s] = _get(nat, roles, R_LOGN_MEAN, t, T, 0.0)
    for b in range(Z[M_NBLK]):
        xo, nb, sv, centred = blk[BLOCK * b], blk[BLOCK * b + 1], blk[BLOCK * b + 2], \
            blk[BLOCK * b + 3]
        target, rmap = blk[BLOCK * b + 5], isec(Z, blk[BLOCK * b + 6])
        n = len(rmap)
        for t in range(T):
            sig = nat[sv * T + t]
            for j in range(nb):
                z = x[xo + t * nb + j]
                if centred == 1:
                    lp += -0.5 * LOG_2PI - math.log(sig) - 0.5 * z * z / (sig * sig)
                    grad[xo + t * nb + j] -= z / (sig * sig)
                    dnat[sv * T + t] += -1.0 / sig + z * z / (sig * sig * sig)
                else:
                    lp += -0.5 * LOG_2PI - 0.5 * z * z
                    grad[xo + t * nb + j] -= z
            eff = _effect(x, F, Z, b, t, nat)
            for s in range(n):
                targets[target, t * n + s] += eff[rmap[s]]
    return lp, nat, dval, dnat, targets


@kernel
def _per_task(nat, roles, T):
    """(s2e, t2, tf, om, va) from the prior variables."""
    s2e, t2, tf = np.empty(T), np.empty(T), np.empty(T)
    om, va = np.empty(6 * T), np.zeros(4 * T)
    for t in range(T):
        s2e[t] = _get(nat, roles, R_SIG_EXP, t, T, 1.0) ** 2
        t2[t] = _get(nat, roles, R_TAU_LLM, t, T, 0.0) ** 2
        tf[t] = _get(nat, roles, R_TAU_FAM, t, T, 0.0) ** 2
        for k in range(6):
            om[k * T + t] = _get(nat, roles, R_Q_CELL + k, t, T, 0.0) ** 2
        if roles[R_VA_NU0] >= 0:
            sd, rs = _get(nat, roles, R_VA_SD, t, T, 1.0), _get(nat, roles, R_VA_RHOS, t, T, 0.0)
            room = _get(nat, roles, R_VA_ROOM, t, T, 0.0)
            va[t] = _get(nat, roles, R_VA_NU0, t, T, 0.0)
            va[T + t] = sd * room * math.sqrt(1.0 - rs * rs)
            va[2 * T + t] = sd * rs
            va[3 * T + t] = sd * sd * (1.0 - rs * rs) * (1.0 - room * room)
    return s2e, t2, tf, om, va


@kernel
def _add(dnat, roles, role, t, T, d):
    v = roles[role]
    if v >= 0:
        dnat[v * T + t] += d


@kernel
def _per_task_back(nat, roles, T, dnat, ds2e, dt2, dtf, dom, dva):
    for t in range(T):
        _add(dnat, roles, R_SIG_EXP, t, T, 2.0 * _get(nat, roles, R_SIG_EXP, t, T, 1.0) * ds2e[t])
        _add(dnat, roles, R_TAU_LLM, t, T, 2.0 * _get(nat, roles, R_TAU_LLM, t, T, 0.0) * dt2[t])
        _add(dnat, roles, R_TAU_FAM, t, T, 2.0 * _get(nat, roles, R_TAU_FAM, t, T, 0.0) * dtf[t])
        for k in range(6):
            _add(dnat, roles, R_Q_CELL + k, t, T,
                 2.0 * _get(nat, roles, R_Q_CELL + k, t, T, 0.0) * dom[k * T + t])
        if roles[R_VA_NU0] >= 0:
            sd, rs = _get(nat, roles, R_VA_SD, t, T, 1.0), _get(nat, roles, R_VA_RHOS, t, T, 0.0)
            room = _get(nat, roles, R_VA_ROOM, t, T, 0.0)
            root = math.sqrt(1.0 - rs * rs)
            gq, gs, gr = dva[T + t], dva[2 * T + t], dva[3 * T + t]
            _add(dnat, roles, R_VA_NU0, t, T, dva[t])
            _add(dnat, roles, R_VA_SD, t, T, gq * room * root + gs * rs
                 + gr * 2.0 * sd * (1.0 - rs * rs) * (1.0 - room * room))
            _add(dnat, roles, R_VA_RHOS, t, T, -gq * sd * room * rs / root + gs * sd
                 - gr * 2.0 * sd * sd * rs * (1.0 - room * room))
            _add(dnat, roles, R_VA_ROOM, t, T, gq * sd * root
                 - gr * 2.0 * sd * sd * (1.0 - rs * rs) * room)


@kernel
def measurement_logp(x, F, Z, grad):
    """log p(x) of the joint measurement model's PyMC model (the same constants), gradient
    into grad."""
    T, S, R = Z[M_T], Z[M_S], Z[M_R]
    roles, blk = isec(Z, Z[M_HEAD] + S_ROLES), isec(Z, Z[M_HEAD] + S_BLOCKS)
    grad[:] = 0.0
    lp, nat, dval, dnat, targets = _inputs(x, F, Z, grad)
    mu = targets[TO_MU, :T * S].copy()
    lam = np.exp(targets[TO_LAMBDA, :T * S])
    sig2 = np.exp(2.0 * targets[TO_LOG_NOISE, :T * S])
    rho = targets[3, :T * R].copy()
    mu_e = np.empty(T)
    for t in range(T):
        mu_e[t] = _get(nat, roles, R_MU_E, t, T, 0.0)
    s2e, t2, tf, om, va = _per_task(nat, roles, T)
    d = np.zeros((4, T * max(S, R, 1)))
    dlam, dsig2 = np.zeros(T * S), np.zeros(T * S)
    dmu_e, ds2e, dt2, dtf = np.zeros(T), np.zeros(T), np.zeros(T), np.zeros(T)
    dom, dva = np.zeros(6 * T), np.zeros(4 * T)
    dmu, drho = np.zeros(T * S), np.zeros(T * R)
    lp += measurement_logp_grad(F, Z, mu, lam, sig2, mu_e, rho, s2e, t2, tf, om, va, dmu, dlam,
                                dsig2, dmu_e, drho, ds2e, dt2, dtf, dom, dva)
    d[TO_MU, :T * S] = dmu
    d[TO_LAMBDA, :T * S] = dlam * lam
    d[TO_LOG_NOISE, :T * S] = dsig2 * 2.0 * sig2
    d[3, :T * R] = drho
    for t in range(T):
        _add(dnat, roles, R_MU_E, t, T, dmu_e[t])
        a = b_ = c_ = 0.0
        for s in range(S):
            a += d[TO_MU, t * S + s]
            b_ += d[TO_LAMBDA, t * S + s]
            c_ += d[TO_LOG_NOISE, t * S + s]
        _add(dnat, roles, R_MU_LLM, t, T, a)
        _add(dnat, roles, R_LAM_MEAN, t, T, b_ / _get(nat, roles, R_LAM_MEAN, t, T, 1.0))
        _add(dnat, roles, R_LOGN_MEAN, t, T, c_)
    _per_task_back(nat, roles, T, dnat, ds2e, dt2, dtf, dom, dva)
    for b in range(Z[M_NBLK]):
        xo, nb, sv, centred = blk[BLOCK * b], blk[BLOCK * b + 1], blk[BLOCK * b + 2], \
            blk[BLOCK * b + 3]
        basis = fsec(F, Z, blk[BLOCK * b + 4])
        target, rmap = blk[BLOCK * b + 5], isec(Z, blk[BLOCK * b + 6])
        rows, n = len(basis) // nb, len(rmap)
        for t in range(T):
            deff = np.zeros(rows)
            for s in range(n):
                deff[rmap[s]] += d[target, t * n + s]
            scale = 1.0 if centred == 1 else nat[sv * T + t]
            for j in range(nb):
                acc = 0.0
                for r in range(rows):
                    acc += basis[r * nb + j] * deff[r]
                grad[xo + t * nb + j] += acc * scale
                if centred != 1:
                    dnat[sv * T + t] += acc * x[xo + t * nb + j]
    table = isec(Z, Z[M_HEAD] + S_VARS)
    for v in range(Z[M_NVAR]):
        xo, size = table[VAR * v], table[VAR * v + 1]
        for t in range(T):
            grad[xo + (0 if size == 1 else t)] += dnat[v * T + t] * dval[v * T + t]
    return lp


@kernel
def measurement_expand(x, F, Z, out):
    """The trace values nutpie stores: the free vector, then every other variable of the PyMC
    model's posterior (ops table, in its order)."""
    T, S = Z[M_T], Z[M_S]
    roles, ops = isec(Z, Z[M_HEAD] + S_ROLES), isec(Z, Z[M_HEAD] + S_OPS)
    scratch = np.zeros(len(x))
    _, nat, _, _, targets = _inputs(x, F, Z, scratch)
    for i in range(Z[M_NOPS]):
        op, arg, at, size = ops[4 * i], ops[4 * i + 1], ops[4 * i + 2], ops[4 * i + 3]
        if op == OP_COPY:
            out[at:at + size] = x[arg:arg + size]
        elif op == OP_NAT:
            for j in range(size):
                out[at + j] = nat[arg * T + j]
        elif op == OP_EFFECT:
            rows = size // T
            for t in range(T):
                out[at + t * rows:at + (t + 1) * rows] = _effect(x, F, Z, arg, t, nat)
        elif op == OP_SOURCE:
            for j in range(T * S):
                v = targets[arg, j]
                out[at + j] = v if arg == TO_MU else math.exp(v)
        elif op == OP_RHO_Q:
            for t in range(T):
                rs = _get(nat, roles, R_VA_RHOS, t, T, 0.0)
                out[at + t] = _get(nat, roles, R_VA_ROOM, t, T, 0.0) * math.sqrt(1.0 - rs * rs)
