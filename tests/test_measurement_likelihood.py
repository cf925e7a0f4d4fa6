"""The joint measurement model's recursion equals the dense multivariate normal (RECURSION.md)."""

import numpy as np
import pytensor.tensor as pt
import pytest

from misalign.models.measurement_likelihood import (
    MeasurementStats,
    dense_leaves,
    dense_measurement_logp,
    integrate_node,
    measurement_logp,
    tree_logp,
)
from misalign.models.recursion import pt_segment_sum

S, R = 3, 3  # LLM sources, expert raters


def random_design(seed: int):
    """Teachers ⊃ lessons ⊃ cells with missing ratings, LLM replicates, an expert-only cell, an
    LLM-only cell with a replicate, a cell with no ratings, and a teacher without value-added."""
    rng = np.random.default_rng(seed)
    cell_lesson, lesson_teacher = [], []
    for t in range(4):
        for _ in range(rng.integers(2, 4)):
            lesson_teacher.append(t)
            cell_lesson.extend([len(lesson_teacher) - 1] * int(rng.integers(1, 5)))
    C = len(cell_lesson)
    cell, column = [], []
    for c in range(C):
        if c == C - 1:
            continue  # no ratings
        for k in range(S + R):
            expert = k >= S
            if c == 0 and not expert or c == 1 and expert:
                continue
            if c > 1 and rng.random() < 0.4:
                continue
            reps = 2 if (not expert and rng.random() < 0.3) or (c == 1 and k == 0) else 1
            cell += [c] * reps
            column += [k] * reps
    cell, column = np.array(cell), np.array(column)
    if not ((cell == 0) & (column >= S)).sum() >= 2:  # cell 0: two experts
        cell = np.r_[cell, 0, 0]
        column = np.r_[column, S, S + 1]
    y = rng.normal(0.0, 1.5, len(cell))
    va = rng.normal(0.0, 1.0, 4)
    va[0] = np.nan
    return y, cell, column, np.array(cell_lesson), np.array(lesson_teacher), va


def random_params(seed: int, equal_lambda: bool = False):
    rng = np.random.default_rng(100 + seed)
    lam = np.full(S, 0.8) if equal_lambda else rng.uniform(0.4, 1.2, S)
    a1 = np.r_[lam, np.ones(R)]
    a2 = np.r_[np.ones(S), np.zeros(R)]
    m = np.r_[rng.normal(0, 0.5, S), rng.normal(0, 0.3) + rng.normal(0, 0.2, R)]
    v = np.r_[rng.uniform(0.2, 0.8, S), np.full(R, rng.uniform(0.2, 0.6))]
    omega = {lv: tuple(rng.uniform(0.05, 0.6, 2)) for lv in ("teacher", "lesson", "cell")}
    va_params = (rng.normal(), rng.normal(0, 0.5), rng.normal(0, 0.5), rng.uniform(0.2, 0.6))
    return a1, a2, m, v, omega, va_params


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("with_va", [True, False], ids=["va", "no-va"])
def test_recursion_equals_dense(seed, with_va):
    y, cell, column, cl, lt, va = random_design(seed)
    a1, a2, m, v, omega, vp = random_params(seed)
    stats = MeasurementStats.from_arrays(y, cell, column, S + R, cl, lt, va if with_va else None)
    got = measurement_logp(stats, a1, a2, m, v, omega, vp if with_va else None)
    dense = dense_measurement_logp(y, cell, column, cl, lt, a1, a2, m, v, omega,
                                   va if with_va else None, vp if with_va else None)
    assert got == pytest.approx(dense, abs=1e-8)


def test_singular_cases_equal_dense():
    """All loadings equal (rank-1 LLM-only cells) and variance components at 0."""
    y, cell, column, cl, lt, va = random_design(3)
    a1, a2, m, v, omega, vp = random_params(3, equal_lambda=True)
    omega = omega | {"lesson": (omega["lesson"][0], 0.0), "cell": (0.0, omega["cell"][1])}
    stats = MeasurementStats.from_arrays(y, cell, column, S + R, cl, lt, va)
    got = measurement_logp(stats, a1, a2, m, v, omega, vp)
    dense = dense_measurement_logp(y, cell, column, cl, lt, a1, a2, m, v, omega, va, vp)
    assert got == pytest.approx(dense, abs=1e-8)


def test_stacked_tasks_sum_and_pytensor_agree():
    """Two tasks in one pass (nodes and columns per task, variances gathered by task) equal
    the sum of the two dense densities; the PyTensor graph gives the same number."""
    parts, dense = [], 0.0
    for seed in (4, 5):
        y, cell, column, cl, lt, va = random_design(seed)
        a1, a2, m, v, omega, vp = random_params(seed)
        dense += dense_measurement_logp(y, cell, column, cl, lt, a1, a2, m, v, omega, va, vp)
        parts.append((y, cell, column, cl, lt, va, a1, a2, m, v, omega, vp))
    (y0, c0, k0, cl0, lt0, va0, *p0), (y1, c1, k1, cl1, lt1, va1, *p1) = parts
    C0, L0, T0 = len(cl0), len(lt0), int(lt0.max()) + 1
    stats = MeasurementStats.from_arrays(
        np.r_[y0, y1], np.r_[c0, c1 + C0], np.r_[k0, k1 + S + R], 2 * (S + R),
        np.r_[cl0, cl1 + L0], np.r_[lt0, lt1 + T0], np.r_[va0, va1])
    a1, a2, m, v = (np.r_[x0, x1] for x0, x1 in zip(p0[:4], p1[:4], strict=True))
    sizes = {"cell": (C0, len(cl1)), "lesson": (L0, len(lt1)),
             "teacher": (T0, int(lt1.max()) + 1)}
    omega = {lv: tuple(np.r_[np.full(sizes[lv][0], p0[4][lv][i]),
                             np.full(sizes[lv][1], p1[4][lv][i])] for i in range(2))
             for lv in sizes}
    T1 = sizes["teacher"][1]
    vp = tuple(np.r_[np.full(T0, p0[5][i]), np.full(T1, p1[5][i])] for i in range(4))
    got = measurement_logp(stats, a1, a2, m, v, omega, vp)
    assert got == pytest.approx(dense, abs=1e-8)
    sym = measurement_logp(stats, pt.as_tensor(a1), pt.as_tensor(a2), pt.as_tensor(m),
                           pt.as_tensor(v), {k: tuple(map(pt.as_tensor, w))
                                             for k, w in omega.items()},
                           tuple(map(pt.as_tensor, vp)), xp=pt, segsum=pt_segment_sum)
    assert float(sym.eval()) == pytest.approx(dense, abs=1e-8)


def test_node_integral_against_quadrature():
    """One node's message against brute-force 2-d quadrature, with a rank-1 J."""
    J11, J12, J22, h1, h2 = 2.0, 0.0, 0.0, 0.7, 0.0  # experts only: rank 1
    w1, w2 = 0.5, 0.3
    u = np.array([0.2, -0.4])
    (j11, j12, j22, g1, g2), delta = integrate_node(J11, J12, J22, h1, h2, w1, w2)
    grid = np.linspace(-8, 8, 1601)
    z1, z2 = np.meshgrid(grid, grid, indexing="ij")
    Z1, Z2 = u[0] + z1, u[1] + z2
    f = np.exp(-0.5 * (J11 * Z1**2 + 2 * J12 * Z1 * Z2 + J22 * Z2**2) + h1 * Z1 + h2 * Z2
               - 0.5 * (z1**2 / w1 + z2**2 / w2)) / (2 * np.pi * np.sqrt(w1 * w2))
    integral = f.sum() * (grid[1] - grid[0]) ** 2
    closed = np.exp(delta - 0.5 * (j11 * u[0]**2 + 2 * j12 * u[0] * u[1] + j22 * u[1]**2)
                    + g1 * u[0] + g2 * u[1])
    assert closed == pytest.approx(integral, rel=1e-8)


def dense_stats(y, cell, column, n_cells: int) -> dict:
    """One task's statistics, as ``MeasurementData.dense_statistics`` lays them out."""
    llm = column < S
    N = np.zeros((n_cells, S))
    Sm = np.zeros((n_cells, S))
    np.add.at(N, (cell[llm], column[llm]), 1.0)
    np.add.at(Sm, (cell[llm], column[llm]), y[llm])
    pair = cell[~llm] * R + column[~llm] - S
    pairs, count = np.unique(pair, return_counts=True)
    K = S + R
    return {"N": N[None], "S": Sm[None], "valid": np.arange(n_cells),
            "nE": np.bincount(cell[~llm], minlength=n_cells).astype(float)[None],
            "sE": np.bincount(cell[~llm], weights=y[~llm], minlength=n_cells)[None],
            "er_pos": pairs // R, "er_task": np.zeros(len(pairs), np.int64),
            "er_rater": pairs % R, "er_n": count.astype(float),
            "n": np.bincount(column, minlength=K).astype(float)[None],
            "sum": np.bincount(column, weights=y, minlength=K)[None],
            "sq": np.bincount(column, weights=y * y, minlength=K)[None]}


def task_params(a1, m, v):
    """(lam, mu, sig2, mu_e, rho, s2e) of one task from the column vectors."""
    mu_e = float(np.mean(m[S:]))
    return (a1[:S][None], m[:S][None], v[:S][None], np.array([mu_e]), (m[S:] - mu_e)[None],
            np.array([v[S]]))


@pytest.mark.parametrize("seed", [0, 1])
def test_llm_and_family_latents_below_the_cell_equal_dense(seed):
    """Sources 0 and 1 are one LLM (two prompts), source 2 another of the same family: an
    LLM's own error on a cell and its family's (lineage), integrated in closed form, equal the
    dense MVN with those latents explicit; τ² = 0 gives the plain leaves; PyTensor agrees."""
    y, cell, column, cl, lt, _ = random_design(seed)
    a1, a2, m, v, omega, _ = random_params(seed)
    st = dense_stats(y, cell, column, len(cl))
    G = np.zeros((S, 2))
    G[[0, 1], 0] = 1.0
    G[2, 1] = 1.0
    H = np.ones((2, 1))
    tau_l, tau_f = 0.3, 0.2
    groups = {"llm": (G, np.array([tau_l])), "family": (H, np.array([tau_f]))}
    P = task_params(a1, m, v)
    msg, const = dense_leaves(st, *P, groups=groups)
    got = const + tree_logp(msg, cl, lt, len(lt), int(lt.max()) + 1, omega)
    sub = {"llm": (np.array([0, 0, 1, -1, -1, -1]), tau_l),
           "family": (np.array([0, 0, 0, -1, -1, -1]), tau_f)}
    dense = dense_measurement_logp(y, cell, column, cl, lt, a1, a2, m, v, omega, sub=sub)
    assert got == pytest.approx(dense, abs=1e-8)
    plain = measurement_logp(MeasurementStats.from_arrays(y, cell, column, S + R, cl, lt),
                             a1, a2, m, v, omega)
    for g in (None, {"llm": (G, np.zeros(1)), "family": (H, np.zeros(1))}):
        msg0, const0 = dense_leaves(st, *P, groups=g)
        assert const0 + tree_logp(msg0, cl, lt, len(lt), int(lt.max()) + 1, omega) == \
            pytest.approx(plain, abs=1e-8)
    sym_groups = {"llm": (G, pt.as_tensor(np.array([tau_l]))),
                  "family": (H, pt.as_tensor(np.array([tau_f])))}
    msg_s, const_s = dense_leaves(st, *(pt.as_tensor(x) for x in P), xp=pt,
                                  segsum=pt_segment_sum, groups=sym_groups)
    sym = const_s + tree_logp(msg_s, cl, lt, len(lt), int(lt.max()) + 1, omega, pt,
                              pt_segment_sum)
    assert float(sym.eval()) == pytest.approx(dense, abs=1e-8)
