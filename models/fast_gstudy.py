"""The G-study (independent Gaussian form) packed for the compiled kernels: every dimension a
residual group, its σ's components of their own, lessons as cells, teachers (and schools,
districts) as levels whose variance is the node's dimension's; the same kernels as E1
(``e1_kernels.py``), checked against the PyMC model in ``tests/test_fast_path.py``."""

from __future__ import annotations

import logging
import math

import numpy as np

from . import e1_layout as ek
from .fast_e1 import (
    FastE1,
    free_layout,
    pack_likelihood,
    reparameterized,
    support_point,
    trace_layout,
)
from .likelihood import SufficientStats
from .packing import Pack
from .prior_kernels import encode
from .spec import zero_sum_basis
from .stacked import StackedStats

log = logging.getLogger(__name__)


def _stats(gm) -> tuple[SufficientStats, list[np.ndarray]]:
    """Sufficient statistics of the stacked dimensions (cells and levels as ``StackedStats``
    indexes them), and each level's node dimension."""
    a = gm._stacked()
    n_dim, n_rater = len(gm.dims), len(gm.coords["rater"])
    design = a["group"] * n_rater + a["rater"]
    st = StackedStats.build(a["y"], a["group"], design, n_dim * n_rater, a["lesson"],
                            gm.parents, n_dim)
    n_keys = int(a["lesson"].max()) + 1
    _, cell = np.unique(a["group"].astype(np.int64) * n_keys + a["lesson"],
                        return_inverse=True)
    stats = SufficientStats.from_arrays(
        a["y"], design, n_dim * n_rater, cell.ravel(),
        [(name, idx) for name, idx, _ in st.parents], grouped=False,
        design_group=np.arange(n_dim * n_rater) // n_rater)
    return stats, [grp for _, _, grp in st.parents]


def pack_gstudy(gm, fold: bool | None = None) -> tuple[FastE1 | None, str]:
    model = gm.model or gm.build_model()
    n_dim, n_rater = len(gm.dims), len(gm.coords["rater"])
    comps = [(c, g) for c in gm.components for g in range(n_dim)]
    cidx = {c: i for i, c in enumerate(comps)}
    stats, groups = _stats(gm)
    p = Pack()
    h = p.header
    pack_likelihood(p, stats, cell_param=stats.cell.pattern_group,
                    level_params=[lev * n_dim + g for lev, g in enumerate(groups)], fold=fold)
    names, shapes, offsets = free_layout(model)
    comp_x = np.zeros(len(comps), dtype=np.int64)
    comp_prior = np.zeros((len(comps), 4))
    blocks, rater_blocks = [], []
    D = n_dim * n_rater
    for rv in model.free_RVs:
        name, xo = rv.name, offsets[rv.name]
        if name.startswith("sigma_") and name[6:] in gm.components:
            code = encode(gm.priors[name], positive=True)
            if code is None:
                return None, f"no kernel for the prior of {name}"
            for g in range(n_dim):
                comp_x[cidx[name[6:], g]] = xo + g
                comp_prior[cidx[name[6:], g]] = code
        elif name == "intercept":
            code = encode(gm.priors["intercept"], positive=False)
            if code is None:
                return None, "no kernel for the intercept's prior"
            M = (np.arange(D)[:, None] // n_rater == np.arange(n_dim)[None, :]).astype(float)
            blocks.append((xo, n_dim, p.f(code), ek.OWN_PRIOR, p.f(M), -1, ek.TO_MEANS))
        elif name == "rater_effect_free":
            basis = zero_sum_basis([n_rater])
            for g in range(n_dim):
                M = np.zeros((D, n_rater - 1))
                M[g * n_rater:(g + 1) * n_rater] = basis
                rater_blocks.append(len(blocks))
                blocks.append((xo + g * (n_rater - 1), n_rater - 1, cidx["rater", g],
                               ek.CENTRED, p.f(M), p.f(basis), ek.TO_MEANS))
        else:
            return None, f"the fast path does not know the variable {name}"
    h[ek.H_HEAD] = len(p.sections)
    level_comps = [cidx[name, g] for name, _ in stats.parents for g in range(n_dim)]
    for arr, kind in ((comp_x, "i"), (np.ones(len(comps)), "f"), (comp_prior, "f"),
                      (np.zeros(len(comps)), "i"), (np.ones(1), "f"), (np.ones(len(comps)), "f"),
                      (np.zeros(4), "f"), (np.zeros(2), "f"), (level_comps, "i"),
                      (np.zeros(0), "i"), (np.array(blocks, dtype=np.int64), "i"),
                      (np.zeros(4), "f"), (np.zeros(0), "f"), (np.ones(1), "f")):
        (p.i if kind == "i" else p.f)(arr)
    def op_of(nm: str, at: int, size: int) -> list | None:
        if nm in offsets:
            return [(ek.OP_EXP, offsets[nm], at, size)]
        if nm == "rater_effect":
            return [(ek.OP_EFFECT, b, at + g * n_rater, n_rater)
                    for g, b in enumerate(rater_blocks)]
        return None

    trace, why = trace_layout(model, names, shapes, offsets, ek.OP_COPY, op_of)
    if trace is None:
        return None, why
    ops, trace_names, trace_shapes = trace
    p.i(np.array(ops, dtype=np.int64).ravel())
    p.i([1])  # S_AGG_M (no budget)
    p.i([cidx["residual", g] for g in range(n_dim)])
    p.i([cidx["lesson", g] for g in range(n_dim)])
    h[ek.H_NCOMP], h[ek.H_BUDGET], h[ek.H_NB] = len(comps), 0, len(blocks)
    h[ek.H_K], h[ek.H_RES], h[ek.H_NA] = 1, cidx["residual", 0], 1
    h[ek.H_NX], h[ek.H_NOPS] = sum(math.prod(s) for s in shapes), len(ops)
    F, Z = p.arrays()
    return FastE1(F, Z, int(h[ek.H_NX]), names, shapes, trace_names, trace_shapes,
                  reparameterized(model), support_point(model, names)), ""


def gstudy_fast_path(gm) -> tuple[FastE1, tuple] | None:
    fast, why = pack_gstudy(gm)
    if fast is None:
        log.info("compiling the PyMC model: %s", why)
        return None
    from .e1_callbacks import e1_expand_c, e1_logp_c

    return fast, (e1_logp_c, e1_expand_c)
