"""Exact marginal likelihood of the joint measurement model (MEASUREMENT.md, RECURSION.md).

Per task, every node of the tree teacher ⊃ lesson ⊃ cell (a unit × task) carries a 2-d latent
(quality part, shared-LLM part) with covariance diag(ω₁, ω₂). A rating in column k (an LLM
source, or an expert rater) is ``m_k + a_kᵀ Z_c + e``, e ~ N(0, v_k), with loading
``a_k = (λ_s, 1)`` for a source and ``(1, 0)`` for an expert. The ratings of a cell give a
Gaussian in its path-sum latent in information form (J, h, κ); each node's latent is integrated
in closed 2×2 form, valid for singular J and Ω; children add at the parent; observed teacher
value-added adds one rank-1 term at the top. Nothing is inverted: every step is elementwise
arithmetic over nodes, so the same code runs in numpy and PyTensor (``xp``/``segsum``).

Several tasks stack in one pass: columns, cells, lessons and teachers are per task (a lesson of
two tasks is two nodes), and the per-node variances are gathered by each node's task.

Cost per evaluation: O(non-empty (cell, column) pairs) for the leaves, then O(nodes).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .recursion import np_segment_sum

LOG_2PI = float(np.log(2 * np.pi))


@dataclass(frozen=True)
class MeasurementStats:
    """Sufficient statistics: per non-empty (cell, column) pair its count and sum; per column
    its count, sum and sum of squares; the tree as parent indices; value-added per teacher."""

    pair_cell: np.ndarray
    pair_column: np.ndarray
    pair_n: np.ndarray
    pair_sum: np.ndarray
    column_n: np.ndarray
    column_sum: np.ndarray
    column_sq: np.ndarray
    cell_lesson: np.ndarray
    lesson_teacher: np.ndarray
    n_cells: int
    n_lessons: int
    n_teachers: int
    va: np.ndarray  # (teachers,) value-added, 0 where not observed
    va_observed: np.ndarray  # (teachers,) 1.0 / 0.0

    @classmethod
    def from_arrays(cls, y: np.ndarray, cell: np.ndarray, column: np.ndarray, n_columns: int,
                    cell_lesson: np.ndarray, lesson_teacher: np.ndarray,
                    va: np.ndarray | None = None) -> MeasurementStats:
        """``y``, ``cell``, ``column``: one entry per rating; ``va``: per teacher, NaN where
        not observed (None: no value-added)."""
        y = np.asarray(y, float)
        cell = np.asarray(cell, np.int64)
        column = np.asarray(column, np.int64)
        n_cells = int(len(cell_lesson))
        key = cell * n_columns + column
        pairs, inverse, counts = np.unique(key, return_inverse=True, return_counts=True)
        n_teachers = int(lesson_teacher.max()) + 1
        if va is None:
            va = np.full(n_teachers, np.nan)
        va = np.asarray(va, float)
        observed = np.isfinite(va)
        return cls(pair_cell=pairs // n_columns, pair_column=pairs % n_columns,
                   pair_n=counts.astype(float),
                   pair_sum=np.bincount(inverse, weights=y, minlength=len(pairs)),
                   column_n=np.bincount(column, minlength=n_columns).astype(float),
                   column_sum=np.bincount(column, weights=y, minlength=n_columns),
                   column_sq=np.bincount(column, weights=y * y, minlength=n_columns),
                   cell_lesson=np.asarray(cell_lesson, np.int64),
                   lesson_teacher=np.asarray(lesson_teacher, np.int64), n_cells=n_cells,
                   n_lessons=int(len(lesson_teacher)), n_teachers=n_teachers,
                   va=np.where(observed, va, 0.0), va_observed=observed.astype(float))


def integrate_node(J11, J12, J22, h1, h2, w1, w2, xp=np):
    """Integrate a node latent z ~ N(0, diag(w1, w2)) out of the message (J, h): the new
    message and each node's log constant (RECURSION.md §2, diagonal closed form)."""
    dJ = J11 * J22 - J12 * J12
    D = 1.0 + w1 * J11 + w2 * J22 + w1 * w2 * dJ
    quad = (w1 * h1 * h1 + w2 * h2 * h2
            + w1 * w2 * (J22 * h1 * h1 - 2.0 * J12 * h1 * h2 + J11 * h2 * h2))
    delta = -0.5 * xp.log(D) + 0.5 * quad / D
    new = ((J11 + w2 * dJ) / D, J12 / D, (J22 + w1 * dJ) / D,
           ((1.0 + w2 * J22) * h1 - w2 * J12 * h2) / D,
           ((1.0 + w1 * J11) * h2 - w1 * J12 * h1) / D)
    return new, delta


def measurement_logp(stats: MeasurementStats, a1, a2, m, v, omega: dict, va_params=None,
                     xp=np, segsum: Callable = np_segment_sum):
    """log p(all ratings, value-added | column parameters, node variances).

    ``a1``, ``a2``, ``m``, ``v``: per column (loadings, offset, noise variance); ``omega``:
    ``{"cell"|"lesson"|"teacher": (ω₁, ω₂)}``, each a scalar or one value per node of that
    level; ``va_params``: per teacher ``(nu0, c_q, c_s, sV2)`` (scalars or arrays), or None:
    value-added = ν₀ + c_q z_q + c_s z_s + e, Var e = sV2, with z the teacher's quality and
    shared deviation in SD units (so c = β σ for a coefficient β per unit of the latent).
    """
    w = 1.0 / v
    col = stats.pair_column
    n, s = stats.pair_n, stats.pair_sum
    cell = stats.pair_cell
    C = stats.n_cells
    wa1, wa2 = w * a1, w * a2
    J11 = segsum(n * (wa1 * a1)[col], cell, C)
    J12 = segsum(n * (wa1 * a2)[col], cell, C)
    J22 = segsum(n * (wa2 * a2)[col], cell, C)
    resid = s - n * m[col]
    h1 = segsum(resid * wa1[col], cell, C)
    h2 = segsum(resid * wa2[col], cell, C)
    nk = stats.column_n
    ll = -0.5 * xp.sum(nk * (LOG_2PI + xp.log(v)) + w * (
        stats.column_sq - 2.0 * m * stats.column_sum + nk * m * m))
    return ll + tree_logp((J11, J12, J22, h1, h2), stats.cell_lesson, stats.lesson_teacher,
                          stats.n_lessons, stats.n_teachers, omega, xp, segsum,
                          (stats.va, stats.va_observed, va_params))


def tree_logp(msg: tuple, cell_lesson: np.ndarray, lesson_teacher: np.ndarray, n_lessons: int,
              n_teachers: int, omega: dict, xp=np, segsum: Callable = np_segment_sum,
              va: tuple | None = None):
    """Integrate the cells' messages up the tree (cell → lesson → teacher → top); ``va`` =
    (value-added, observed, params) adds value-added at the teacher (params None: none)."""
    ll = 0.0
    for level, parent, size in (("cell", cell_lesson, n_lessons),
                                ("lesson", lesson_teacher, n_teachers)):
        msg, delta = integrate_node(*msg, *omega[level], xp=xp)
        ll = ll + xp.sum(delta)
        msg = tuple(segsum(x, parent, size) for x in msg)
    J11, J12, J22, h1, h2 = msg
    w1, w2 = omega["teacher"]
    if va is not None and va[2] is not None:
        # In SD units of the teacher's latents (the density is the same): value-added's
        # coefficients there are bounded by its own SD, so no term grows as a σ goes to 0.
        values, o, (nu0, cq, cs, sv2) = va
        s1, s2 = xp.sqrt(w1), xp.sqrt(w2)
        J11, J12, J22, h1, h2 = w1 * J11, s1 * s2 * J12, w2 * J22, s1 * h1, s2 * h2
        w1 = w2 = 1.0
        r = (values - nu0) * o
        J11 = J11 + o * cq * cq / sv2
        J12 = J12 + o * cq * cs / sv2
        J22 = J22 + o * cs * cs / sv2
        h1 = h1 + r * cq / sv2
        h2 = h2 + r * cs / sv2
        ll = ll - 0.5 * xp.sum(o * (LOG_2PI + xp.log(sv2) + r * r / sv2))
    _, delta = integrate_node(J11, J12, J22, h1, h2, w1, w2, xp=xp)
    return ll + xp.sum(delta)


def dense_leaves(stats: dict, lam, mu, sig2, mu_e, rho, s2e, xp=np,
                 segsum: Callable = np_segment_sum, groups: dict | None = None
                 ) -> tuple[tuple, object]:
    """The cells' messages and the constant from ``MeasurementData.dense_statistics``, with
    the parameters per task: sources' loadings ``lam``, intercepts ``mu`` and noise variances
    ``sig2`` (task, source); the experts' mean ``mu_e`` and noise ``s2e`` (task,) and the
    severities ``rho`` (task, rater).

    The LLM part of every cell is two batched matrix products of the (task, cell, source) counts
    and sums with a few (task, source) columns of parameters (O(cells × sources), in BLAS). In a
    balanced design (``N`` one row per task, with the per-task moments of the sums
    ``S_mean``/``S_cross``) it is one product of the sums with two columns, the rest per task
    (``_folded_llm``). The expert part is per-cell counts and sums plus the severities of the
    (cell, rater) pairs. ``groups`` adds latents below the cell, each N(0, τ²) with loading 1 on
    a group of sources: ``{"llm": (G, τ²), "family": (H, τ²)}`` with G (sources × LLMs) the
    indicator of each LLM's sources and H (LLMs × families) of each family's LLMs, τ² per task.
    An LLM's latent (its own error on the cell, whatever the prompt) is integrated first, then
    its family's (lineage), both in closed form (Schur complements; exact for τ² = 0)."""
    if "S_cross" in stats:
        (J11, J12, J22, h1, h2), extra = _folded_llm(stats, lam, mu, sig2, groups, xp)
    else:
        (J11, J12, J22, h1, h2), extra = _cell_llm(stats, lam, mu, sig2, groups, xp)
    # Experts: loading (1, 0), offset μ_E + ρ_r, noise s2e.
    n_tasks, size = stats["nE"].shape
    sev = segsum(stats["er_n"] * rho[stats["er_task"], stats["er_rater"]], stats["er_pos"],
                 n_tasks * size).reshape((n_tasks, size))
    J11 = J11 + stats["nE"] / s2e[:, None]
    h1 = h1 + (stats["sE"] - stats["nE"] * mu_e[:, None] - sev) / s2e[:, None]
    valid = stats["valid"]
    zero = 0.0 * stats["nE"]  # (task, cell): count-only terms of a balanced design broadcast
    msg = tuple((x + zero).reshape((-1,))[valid] for x in (J11, J12, J22, h1, h2))
    m = xp.concatenate([mu, mu_e[:, None] + rho], axis=1)
    v = xp.concatenate([sig2, s2e[:, None] + 0.0 * rho], axis=1)
    nk = stats["n"]
    const = -0.5 * xp.sum(nk * (LOG_2PI + xp.log(v)) + (
        stats["sq"] - 2.0 * m * stats["sum"] + nk * m * m) / v)
    return msg, const + extra


def _folded_llm(stats: dict, lam, mu, sig2, groups: dict | None, xp):
    """The LLM part of the leaves when every cell of a task has the same counts: the
    information (J) is one value per task, each cell's h is its sums times two columns of
    coefficients, and the sub-cell latents' terms, quadratic in the sums, add up over a task's
    cells through their mean and centred cross-products. Per gradient: one (cells × sources)
    product, the rest per task."""
    n = stats["N"][:, 0, :]
    w = 1.0 / sig2
    wl = w * lam
    nw, nwl = n * w, n * wl
    # (J11, J12, J22, the two columns that give h from a cell's sums, their offsets)
    state = ((nwl * lam).sum(1), nwl.sum(1), nw.sum(1), wl, w, (nwl * mu).sum(1),
             (nw * mu).sum(1))
    cells = stats["cells"][:, None]

    def summed(A, k, c, log_term):
        """Σ over a task's cells of 0.5 c (S_c·A − k)² − 0.5 log_term, per column of A."""
        spread = (A * xp.matmul(stats["S_cross"], A)).sum(1)
        centre = (stats["S_mean"][:, :, None] * A).sum(1) - k
        return xp.sum(0.5 * c * (spread + cells * centre * centre) - 0.5 * cells * log_term)

    extra = 0.0
    if groups:
        G, t2 = groups["llm"]
        t2 = t2[:, None]
        A = w[:, :, None] * G  # an LLM's residual sum: its sources' sums weighted
        k = xp.matmul(nw * mu, G)
        W, B1 = xp.matmul(nw, G), xp.matmul(nwl, G)
        c = t2 / (1.0 + t2 * W)
        state = _absorb(state, A, k, c, B1, W)
        extra = summed(A, k, c, xp.log(1.0 + t2 * W))
        if "family" in groups:
            H, tf = groups["family"]
            tf = tf[:, None]
            e = 1.0 / (1.0 + t2 * W)
            F1, F2 = xp.matmul(B1 * e, H), xp.matmul(W * e, H)
            AF, kF = xp.matmul(A * e[:, None, :], H), xp.matmul(k * e, H)
            cf = tf / (1.0 + tf * F2)
            state = _absorb(state, AF, kF, cf, F1, F2)
            extra = extra + summed(AF, kF, cf, xp.log(1.0 + tf * F2))
    J11, J12, J22, coef1, coef2, k1, k2 = state
    h = xp.matmul(stats["S"], xp.stack([coef1, coef2], axis=2))
    return (J11[:, None], J12[:, None], J22[:, None], h[..., 0] - k1[:, None],
            h[..., 1] - k2[:, None]), extra


def _absorb(state: tuple, A, k, c, b1, b2) -> tuple:
    """Integrate one latent per (task, group) out of the folded state: a group's residual sum
    is S_c·A − k, its loadings on (quality, shared) b1, b2, and c = τ²/(1 + τ² W)."""
    J11, J12, J22, coef1, coef2, k1, k2 = state
    return (J11 - (c * b1 * b1).sum(1), J12 - (c * b1 * b2).sum(1), J22 - (c * b2 * b2).sum(1),
            coef1 - (A * (c * b1)[:, None, :]).sum(-1), coef2 - (A * (c * b2)[:, None, :]).sum(-1),
            k1 - (c * b1 * k).sum(1), k2 - (c * b2 * k).sum(1))


def _cell_llm(stats: dict, lam, mu, sig2, groups: dict | None, xp):
    """The LLM part of the leaves from per-cell counts and sums (any design)."""
    w = 1.0 / sig2
    wl = w * lam
    N, S = stats["N"], stats["S"]
    n_cols = [wl * lam, wl, w, wl * mu, w * mu]
    s_cols = [wl, w]
    L = 0
    if groups:
        G = groups["llm"][0]
        L = G.shape[1]
        n_cols += [wl[:, :, None] * G, (w * mu)[:, :, None] * G]  # B1, Σ w m by LLM
        s_cols += [w[:, :, None] * G]  # Σ w y by LLM
        n_cols.insert(5, w[:, :, None] * G)  # W (= B2: a source's shared loading is 1)
    flat_n = [c[:, :, None] if c.ndim == 2 else c for c in n_cols]
    flat_s = [c[:, :, None] if c.ndim == 2 else c for c in s_cols]
    NP = xp.matmul(N, xp.concatenate(flat_n, axis=2))
    SP = xp.matmul(S, xp.concatenate(flat_s, axis=2))
    J11, J12, J22 = NP[..., 0], NP[..., 1], NP[..., 2]
    h1, h2 = SP[..., 0] - NP[..., 3], SP[..., 1] - NP[..., 4]
    extra = 0.0
    if groups:
        t2 = groups["llm"][1][:, None, None]
        W, B1 = NP[..., 5:5 + L], NP[..., 5 + L:5 + 2 * L]
        Rr = SP[..., 2:2 + L] - NP[..., 5 + 2 * L:5 + 3 * L]
        B2 = W
        c = t2 / (1.0 + t2 * W)
        J11, J12, J22 = (J11 - (c * B1 * B1).sum(-1), J12 - (c * B1 * B2).sum(-1),
                         J22 - (c * B2 * B2).sum(-1))
        h1, h2 = h1 - (c * B1 * Rr).sum(-1), h2 - (c * B2 * Rr).sum(-1)
        cell_terms = (-0.5 * xp.log(1.0 + t2 * W) + 0.5 * c * Rr * Rr).sum(-1)
        if "family" in groups:
            H, tau2f = groups["family"]
            e = 1.0 / (1.0 + t2 * W)  # what is left of each LLM's ratings for its family
            F1, F2, Ff, Fh = (B1 * e) @ H, (B2 * e) @ H, (W * e) @ H, (Rr * e) @ H
            tf = tau2f[:, None, None]
            cf = tf / (1.0 + tf * Ff)
            J11, J12, J22 = (J11 - (cf * F1 * F1).sum(-1), J12 - (cf * F1 * F2).sum(-1),
                             J22 - (cf * F2 * F2).sum(-1))
            h1, h2 = h1 - (cf * F1 * Fh).sum(-1), h2 - (cf * F2 * Fh).sum(-1)
            cell_terms = cell_terms + (-0.5 * xp.log(1.0 + tf * Ff) + 0.5 * cf * Fh * Fh).sum(-1)
        extra = xp.sum(cell_terms.reshape((-1,))[stats["valid"]])
    return (J11, J12, J22, h1, h2), extra


def dense_measurement_logp(y, cell, column, cell_lesson, lesson_teacher, a1, a2, m, v, omega,
                           va=None, va_params=None, sub: dict | None = None) -> float:
    """The same log density from the dense multivariate normal of every rating and observed
    value-added (tests only: O(n³))."""
    from scipy.stats import multivariate_normal

    y = np.asarray(y, float)
    cell_lesson, lesson_teacher = np.asarray(cell_lesson), np.asarray(lesson_teacher)
    C, Lz = len(cell_lesson), len(lesson_teacher)
    T = int(lesson_teacher.max()) + 1
    n = len(y)
    # Loading of each observation onto [z_t (2T) | z_l (2L) | z_c (2C)].
    rows = []
    for i in range(n):
        c = cell[i]
        lesson = cell_lesson[c]
        t = lesson_teacher[lesson]
        a = np.zeros(2 * (T + Lz + C))
        for base, node in ((0, t), (2 * T, lesson), (2 * (T + Lz), c)):
            a[base + 2 * node] = a1[column[i]]
            a[base + 2 * node + 1] = a2[column[i]]
        rows.append(a)
    mean = list(np.asarray(m)[column])
    noise = list(np.asarray(v)[column])
    obs = list(y)
    if va is not None and va_params is not None:
        nu0, cq, cs, sv2 = (np.broadcast_to(np.asarray(p, float), (T,)) for p in va_params)
        sd = [np.broadcast_to(np.sqrt(np.asarray(x, float)), (T,)) for x in omega["teacher"]]
        bq, bs = cq / sd[0], cs / sd[1]  # per unit of the latent, as the dense form has it
        for t in range(T):
            if np.isfinite(va[t]):
                a = np.zeros(2 * (T + Lz + C))
                a[2 * t], a[2 * t + 1] = bq[t], bs[t]
                rows.append(a)
                mean.append(nu0[t])
                noise.append(sv2[t])
                obs.append(va[t])
    A = np.array(rows)
    if sub:  # latents per (cell, group of columns): {name: (group of each column or -1, τ²)}
        blocks, variances = [], []
        for group, tau2 in sub.values():
            group = np.asarray(group)
            n_g = int(group.max()) + 1
            B = np.zeros((len(A), C * n_g))
            for i in range(n):
                if group[column[i]] >= 0:
                    B[i, cell[i] * n_g + group[column[i]]] = 1.0
            blocks.append(B)
            variances.append(np.full(C * n_g, tau2))
        A = np.hstack([A, *blocks])
        extra_prior = np.concatenate(variances)
    else:
        extra_prior = np.zeros(0)
    prior = []
    for level, size in (("teacher", T), ("lesson", Lz), ("cell", C)):
        w1, w2 = (np.broadcast_to(np.asarray(x, float), (size,)) for x in omega[level])
        prior.extend(np.column_stack([w1, w2]).ravel())
    prior = np.concatenate([prior, extra_prior])
    cov = A @ np.diag(prior) @ A.T + np.diag(noise)
    return float(multivariate_normal(mean=np.array(mean), cov=cov).logpdf(np.array(obs)))
