"""E1's Student-t data packed for the fused kernel (``student_kernels.py``): the ratings in cell
order with their design cells, each cell's task, centre and offset composition, and the nested
levels above the cells."""

from __future__ import annotations

import numpy as np

from . import kernels as kk
from . import student_kernels as sk
from .packing import pack_levels


def pack_student(p, vpm, cell_x: int, nu_x: int, nu_prior: np.ndarray) -> None:
    """Write the Student-t likelihood's sections into ``p`` (a ``fast_e1.Pack``); ``cell_x``,
    ``nu_x``: where the cell latents and log(ν − 2) sit in the free vector."""
    spec, data = vpm.spec, vpm.data
    h = p.header
    K = len(spec.coords["task"])
    w = spec.reference_weights
    h[kk.H_D], h[kk.H_G], h[kk.H_J], h[kk.H_L] = spec.n_design, K, 0, len(spec.levels)
    h[kk.H_E] = 0 if w is None else w.shape[1]
    pack_levels(p, spec.levels)
    C = int(data.cell.max()) + 1
    order = np.argsort(data.cell, kind="stable")
    design_task = (np.zeros(spec.n_design, dtype=np.int64) if spec.design_task is None
                   else np.asarray(spec.design_task, dtype=np.int64))
    # base (intercept + task effect) is the same in every design cell of a task
    first_design = np.full(K, -1, dtype=np.int64)
    first_design[design_task[::-1]] = np.arange(spec.n_design)[::-1]
    cell_task = np.asarray(data.cell_task, dtype=np.int64)[:C]
    if w is None:
        comp, weights = np.zeros(C, dtype=np.int64), np.zeros(0)
    else:
        weights, comp = np.unique(np.asarray(w, dtype=float), axis=0, return_inverse=True)
    design = np.asarray(spec.design, dtype=np.int64)
    y = np.asarray(data.error, dtype=float)
    dense = _dense(data.cell, design, design_task, y, C, K)
    h[sk.H_STUDENT] = p.i(np.r_[0, np.cumsum(np.bincount(data.cell, minlength=C))]
                          if dense is None else np.zeros(0))
    p.f(y[order] if dense is None else dense[0])
    p.i(design[order] if dense is None else np.zeros(0))
    p.i(cell_task)
    p.i(first_design[cell_task])
    p.i(comp.ravel())
    p.f(weights)
    p.f(np.bincount(cell_task[data.cell], minlength=K).astype(float))
    p.i(design_task)
    p.i([cell_x, nu_x])
    p.f(nu_prior)
    p.i(np.zeros(0) if dense is None else dense[1])
    p.f(np.zeros(0) if dense is None else dense[2])


def _dense(cell: np.ndarray, design: np.ndarray, design_task: np.ndarray, y: np.ndarray,
           C: int, K: int) -> tuple[np.ndarray, list[int], np.ndarray] | None:
    """The ratings on a grid (cell × replicate × the design cells of its task) when it is at
    least 80% full: (grid, [replicates, design cells per task], mask of the filled slots)."""
    n_design = len(design_task)
    P = n_design // max(K, 1)
    if P * K != n_design or np.any(design_task != np.arange(n_design) // P):
        return None
    key = cell * n_design + design
    order = np.argsort(key, kind="stable")
    sk_ = key[order]
    first = np.r_[True, sk_[1:] != sk_[:-1]]
    start = np.maximum.accumulate(np.where(first, np.arange(len(sk_)), 0))
    rep = np.empty(len(y), dtype=np.int64)
    rep[order] = np.arange(len(sk_)) - start
    reps = int(rep.max()) + 1 if len(rep) else 1
    size = C * reps * P
    if len(y) < 0.8 * size:
        return None
    slot = cell * reps * P + rep * P + design % P
    grid, mask = np.zeros(size), np.zeros(size)
    grid[slot] = y
    mask[slot] = 1.0
    return grid, [reps, P], mask
