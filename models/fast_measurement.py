"""The joint measurement model's data, priors and parameter layout packed for the compiled
kernels (``measurement_kernels.py``, ``measurement_head.py``).

Nothing here compiles: the PyMC model is built (a graph) only to read its free vector and
trace, so the fast path samples exactly what the PyMC model would. A prior, a transform or a
variable the kernels do not know makes ``pack_measurement`` return None with the reason, and
the model is compiled by PyMC as before.
"""

from __future__ import annotations

import logging
import math

import numpy as np
from pymc.distributions.transforms import IntervalTransform, LogTransform

from . import measurement_layout as ml
from .fast_e1 import FastE1, _shape, free_layout, reparameterized, support_point, trace_layout
from .packing import Pack
from .prior_kernels import encode
from .spec import zero_sum_basis

log = logging.getLogger(__name__)

ROLES = {"mu_expert": ml.R_MU_E, "sigma_rater": ml.R_SIG_RATER, "sigma_expert": ml.R_SIG_EXP,
         "mu_llm": ml.R_MU_LLM, "lambda_mean": ml.R_LAM_MEAN,
         "log_noise_mean": ml.R_LOGN_MEAN, "sigma_llm_cell": ml.R_TAU_LLM,
         "sigma_lineage": ml.R_TAU_FAM, "sigma_quality_cell": ml.R_Q_CELL,
         "sigma_shared_cell": ml.R_S_CELL, "sigma_quality_lesson": ml.R_Q_LESSON,
         "sigma_shared_lesson": ml.R_S_LESSON, "sigma_quality_teacher": ml.R_Q_TEACHER,
         "sigma_shared_teacher": ml.R_S_TEACHER, "va_intercept": ml.R_VA_NU0,
         "va_sd": ml.R_VA_SD, "va_rho_shared": ml.R_VA_RHOS,
         "va_rho_quality_room": ml.R_VA_ROOM}
TARGETS = {"mu": ml.TO_MU, "lambda": ml.TO_LAMBDA, "log_noise": ml.TO_LOG_NOISE}
SOURCES = {"mu_source": ml.TO_MU, "lambda_source": ml.TO_LAMBDA,
           "noise_sd_source": ml.TO_LOG_NOISE}


def _pack_data(p: Pack, mm) -> None:
    """The likelihood's sections, in ``measurement_layout``'s order."""
    d = mm.data
    T, S, R = len(d.tasks), len(d.sources), len(d.raters)
    C, K = len(d.cell_task), d.n_local
    h = p.header
    h[ml.M_T], h[ml.M_S], h[ml.M_R], h[ml.M_C] = T, S, R, C
    h[ml.M_NL], h[ml.M_NT] = len(d.lesson_teacher), len(d.teacher_task)
    h[ml.M_L], h[ml.M_FAM] = len(mm.coords["llm"]), len(mm.coords["family"])
    h[ml.M_SUB] = (ml.SUB_NONE if not mm.sub_levels else
                   ml.SUB_FAMILY if "lineage" in mm.sub_levels else ml.SUB_LLM)
    for arr in (d.cell_task, d.cell_lesson, d.lesson_teacher, d.lesson_task, d.teacher_task):
        p.i(arr)
    local = d.column % K
    llm = local < S
    pat = _patterns(d, llm, local)
    for kind, arr in pat["blocks"]:
        (p.i if kind == "i" else p.f)(arr)
    p.i(mm.source_llm)
    p.i(mm.llm_family)
    ex = ~llm
    key = d.cell[ex] * max(R, 1) + (local[ex] - S)
    pairs, counts = np.unique(key, return_counts=True)
    p.f(np.bincount(d.cell[ex], minlength=C))
    p.f(np.bincount(d.cell[ex], weights=d.y[ex], minlength=C))
    p.i(np.searchsorted(pairs // max(R, 1), np.arange(C + 1)))
    p.i(pairs % max(R, 1))
    p.f(counts)
    n_cols = T * K
    p.f(np.bincount(d.column, minlength=n_cols))
    p.f(np.bincount(d.column, weights=d.y, minlength=n_cols))
    p.f(np.bincount(d.column, weights=d.y ** 2, minlength=n_cols))
    NT = len(d.teacher_task)
    if d.has_value_added:
        va, observed, known = d.value_added_nodes()
        h[ml.M_VA] = 1
    else:
        va, observed, known = np.zeros(NT), np.zeros(NT), np.zeros(NT)
    for arr in (va, observed, known):
        p.f(arr)
    h[ml.M_P] = pat["n"]
    for kind, arr in pat["patterns"]:
        (p.i if kind == "i" else p.f)(arr)
    assert len(p.sections) == ml.S_PAT_CELLS + 1


def _patterns(d, llm: np.ndarray, local: np.ndarray) -> dict:
    """Each cell's count pattern (its task and its ratings per source): ``blocks``, the LLM
    sums as one source-major block per pattern with each pattern's cells; ``patterns``, each
    cell's pattern and each pattern's task, (source, count) list and number of cells."""
    S, C = len(d.sources), len(d.cell_task)
    counts = np.zeros((C, S + 1))
    np.add.at(counts, (d.cell[llm], local[llm]), 1.0)
    sums = np.zeros((C, S))
    np.add.at(sums, (d.cell[llm], local[llm]), d.y[llm])
    counts[:, S] = d.cell_task
    rows, cell_pat = np.unique(counts, axis=0, return_inverse=True)
    cell_pat = cell_pat.ravel()
    srcs = [np.flatnonzero(r[:S]) for r in rows]
    cells = np.argsort(cell_pat, kind="stable")
    cptr = np.searchsorted(cell_pat[cells], np.arange(len(rows) + 1))
    blocks = [sums[cells[cptr[q]:cptr[q + 1]]][:, x].T.ravel() for q, x in enumerate(srcs)]
    none = np.zeros(0)
    block_ptr = np.r_[0, np.cumsum([len(b) for b in blocks])]
    return {"n": len(rows),
            "blocks": [("i", cptr), ("i", cells), ("i", block_ptr),
                       ("f", np.concatenate(blocks) if blocks else none)],
            "patterns": [("i", cell_pat), ("i", rows[:, S]),
                         ("i", np.r_[0, np.cumsum([len(x) for x in srcs])]),
                         ("i", np.concatenate(srcs) if srcs else none),
                         ("f", np.concatenate([r[x] for r, x in zip(rows, srcs, strict=True)])
                          if srcs else none),
                         ("f", np.bincount(cell_pat, minlength=len(rows)))]}


def _prior_spec(prior, transform) -> tuple[np.ndarray | None, int]:
    """(the prior's F section: code, parameters, interval bounds; its transform)."""
    if transform is None:
        code = encode(prior, positive=False)
        return (None if code is None else np.r_[code, 0.0, 0.0]), ml.T_IDENTITY
    if isinstance(transform, LogTransform):
        code = encode(prior, positive=True)
        return (None if code is None else np.r_[code, 0.0, 0.0]), ml.T_LOG
    if isinstance(transform, IntervalTransform) and prior.distribution == "Uniform" and \
            set(prior.parameters) == {"lower", "upper"}:
        try:
            lo, hi = float(prior.parameters["lower"]), float(prior.parameters["upper"])
        except (TypeError, ValueError):
            return None, 0
        return np.array([ml.UNIFORM, lo, hi, 0.0, lo, hi]), ml.T_INTERVAL
    return None, 0


def _block_rows(mm, eff: str) -> tuple[list[int], np.ndarray]:
    """An effect's sizes (its dims after the task) and each source's row in it."""
    m, pr = mm.source_llm, mm.source_prompt
    L, P = len(mm.coords["llm"]), len(mm.coords["prompt"])
    return {"llm": ([L], m), "prompt": ([P], pr), "llm_prompt": ([L, P], m * P + pr)}[eff]


def pack_measurement(mm) -> tuple[FastE1 | None, str]:
    """The fast path's arrays for a ``MeasurementModel``; (None, why) when a prior, transform
    or variable of its PyMC model has no kernel."""
    model = mm.model or mm.build_model()
    p = Pack()
    _pack_data(p, mm)
    names, shapes, offsets = free_layout(model)
    T = len(mm.coords["task"])
    var_rows, var_of, blocks, block_of = [], {}, [], {}
    specs = []
    for rv in model.free_RVs:
        name, xo = rv.name, offsets[rv.name]
        size = math.prod(_shape(model, name))
        if name in mm.priors:
            spec, tr = _prior_spec(mm.priors[name], model.rvs_to_transforms.get(rv))
            if spec is None or size not in (1, T) or (size == 1 and _shape(model, name)):
                return None, f"no kernel for the prior of {name} " \
                             f"({mm.priors[name].distribution})"
            var_of[name] = len(var_rows)
            var_rows.append([xo, size, tr, -1])
            specs.append(spec)
        elif name.endswith(("_free", "_z")):
            block_of[name.rsplit("_", 1)[0]] = (rv, name.endswith("_free"))
        else:
            return None, f"the fast path does not know the variable {name}"
    for row, spec in zip(var_rows, specs, strict=True):
        row[3] = p.f(spec)
    roles = np.full(ml.N_ROLES, -1, dtype=np.int64)
    for name, role in ROLES.items():
        if name in var_of:
            roles[role] = var_of[name]
    block_index = {}
    for eff_name, (rv, centred) in block_of.items():
        nb = _shape(model, rv.name)[1]
        known = {f"{term}_{eff}_effect": (term, eff) for term in TARGETS
                 for eff in ("llm", "prompt", "llm_prompt")}
        if eff_name == "rater_effect":
            sizes, rows, target, sigma = [len(mm.coords["rater"])], \
                np.arange(len(mm.coords["rater"])), ml.TO_RATER, "sigma_rater"
        elif eff_name in known:
            term, eff = known[eff_name]
            (sizes, rows), target, sigma = _block_rows(mm, eff), TARGETS[term], \
                f"sigma_{term}_{eff}"
        else:
            return None, f"the fast path does not know the variable {rv.name}"
        if sigma not in var_of:
            return None, f"no σ for {rv.name}"
        basis = zero_sum_basis(sizes)
        if basis.shape[1] != nb:
            return None, f"{rv.name}: the basis does not match"
        block_index[eff_name] = len(blocks)
        blocks.append((offsets[rv.name], nb, var_of[sigma], int(centred), p.f(basis), target,
                       p.i(rows)))
    def op_of(nm: str, at: int, size: int) -> list | None:
        if nm in var_of:
            op = (ml.OP_NAT, var_of[nm])
        elif nm in block_index:
            op = (ml.OP_EFFECT, block_index[nm])
        elif nm in SOURCES:
            op = (ml.OP_SOURCE, SOURCES[nm])
        elif nm == "va_rho_quality":
            op = (ml.OP_RHO_Q, 0)
        else:
            return None
        return [(*op, at, size)]

    trace, why = trace_layout(model, names, shapes, offsets, ml.OP_COPY, op_of)
    if trace is None:
        return None, why
    ops, trace_names, trace_shapes = trace
    first = len(p.sections)
    p.i(np.array(var_rows, dtype=np.int64).ravel())
    p.i(roles)
    p.i(np.array(blocks, dtype=np.int64).ravel())
    p.i(np.array(ops, dtype=np.int64).ravel())
    h = p.header
    h[ml.M_NX] = sum(math.prod(s) for s in shapes)
    h[ml.M_NVAR], h[ml.M_NBLK], h[ml.M_NOPS] = len(var_rows), len(blocks), len(ops)
    # The head's tables sit after the priors and bases: their section numbers in a header.
    h[ml.M_HEAD] = first
    F, Z = p.arrays()
    return FastE1(F, Z, int(h[ml.M_NX]), names, shapes, trace_names, trace_shapes,
                  reparameterized(model), support_point(model, names)), ""


def measurement_fast_path(mm) -> tuple[FastE1, tuple] | None:
    """(packed model, its logp and expand C callbacks) for nutpie, or None (logged why)."""
    fast, why = pack_measurement(mm)
    if fast is None:
        log.info("compiling the PyMC model: %s", why)
        return None
    from .measurement_callbacks import measurement_expand_c, measurement_logp_c

    return fast, (measurement_logp_c, measurement_expand_c)
