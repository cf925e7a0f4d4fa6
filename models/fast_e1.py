"""E1's data, priors and parameter layout packed for the compiled kernels (``e1_kernels.py``).

Nothing here compiles: the PyMC model is built (a graph, no compilation) only to read its
parameter layout, so the fast path samples exactly the free vector the PyMC model would, and
every prior and deterministic it meets must be one the kernels know; otherwise ``pack_e1``
returns None with the reason, and the model is compiled by PyMC as before.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np

from misalign.data.components import present_aggregates

from . import e1_layout as ek
from . import kernels as kk
from .e1_priors import SIGMA_PRIORS, budget_aggregates
from .fast_student import pack_student
from .grouped import GroupedCells
from .likelihood import SufficientStats
from .packing import Pack, pack_levels
from .prior_kernels import encode
from .spec import EFFECTS, design_means, full_design_means, within_family_basis, zero_sum_basis

log = logging.getLogger(__name__)
# Student-t: the realised mean squared residual given the cell latents, per draw (the shares'
# residual variance), kept in place of the latents themselves.
RESIDUAL_MEAN_SQUARE = "residual_mean_square"


def pack_likelihood(p: Pack, stats: SufficientStats, cell_param: np.ndarray | None = None,
                    level_params: list[np.ndarray] | None = None,
                    fold: bool | None = None) -> None:
    """The Gaussian marginal likelihood's data (gaussian_kernels.gaussian_logp_grad).
    ``cell_param``: each cell pattern's cell variance; ``level_params``: per level, each node's
    variance; ``fold``: the cell level folded into patterns (None: when that shrinks the
    work)."""
    h = p.header
    J = len(stats.tables) - 1
    h[kk.H_D], h[kk.H_G], h[kk.H_J], h[kk.H_L] = stats.n_design, stats.n_groups, J, \
        len(stats.parents)
    h[kk.H_GLOBAL] = p.f(stats.design_sum)
    p.f(stats.design_n)
    p.i(stats.design_group)
    p.f(stats.group_sum_sq)
    p.f(stats.group_df)
    p.f([stats.sum_log_n])
    for t, (table, ks) in enumerate(zip(stats.tables, stats.ks, strict=True)):
        rows, cols = np.nonzero(table.design_rows)
        s = p.f(table.design_rows[rows, cols])
        if t == 0:
            h[kk.H_TABLES] = s
        p.i(table.pattern_design)
        p.i(table.pattern_group)
        for arr in (table.pat_n, table.pat_count, table.pat_sum, table.pat_sumsq, ks):
            p.f(arr)
        p.i(np.searchsorted(rows, np.arange(len(table.design_rows) + 1)))
        p.i(cols)
    cell = stats.cell
    E = 0 if stats.comp_weights is None else stats.comp_weights.shape[1]
    h[kk.H_E] = E
    h[kk.H_CELLS] = p.i(cell.node_pattern)
    p.f(cell.node_n)
    p.f(cell.node_sum)
    p.i(stats.cell_comp if E else np.zeros(0))
    p.f(stats.comp_weights if E else np.zeros(0))
    p.i(np.zeros(len(cell.pat_n), dtype=np.int64) if cell_param is None else cell_param)
    pack_levels(p, stats.parents, level_params)
    cell_param = np.zeros(len(cell.pat_n), dtype=np.int64) if cell_param is None else cell_param
    _pack_fold(p, stats, cell_param, fold)


def _pack_fold(p: Pack, stats: SufficientStats, cell_param: np.ndarray,
               fold: bool | None) -> None:
    """grouped.py's folded cell level, with the cell variance's parameter in the value key
    (patterns of one class must share λ)."""
    if not stats.parents or fold is False:
        return
    top = stats.tables[-1]
    key = np.column_stack([top.pat_n, top.pattern_group, cell_param, stats.ks[-1]])
    value_key = np.unique(key, axis=0, return_inverse=True)[1].ravel()
    g = GroupedCells.build(stats.parents, top, value_key, stats.cell_comp, force=fold)
    if g is None:
        return
    p.header[kk.H_FOLD] = p.i(g.value_pattern)
    p.f(g.n_values)
    p.f(g.unit_totals)
    p.i(g.unit_pattern)
    p.f(g.unit_counts)
    p.f(g.unit_mult)
    offsets = g.pair_pattern is not None
    for kind, arr in (("i", g.pair_pattern), ("i", g.pair_comp), ("f", g.pair_count),
                      ("f", g.pair_sum), ("i", g.unit_comp)):
        (p.i if kind == "i" else p.f)(arr if offsets else np.zeros(0))
    extra = g.extra if offsets else (np.zeros(0),) * 4
    for kind, arr in zip("iiif", extra, strict=True):
        (p.i if kind == "i" else p.f)(arr)


@dataclass
class FastE1:
    """What the sampler needs: the packed arrays, the free vector's layout and the trace's."""

    F: np.ndarray
    Z: np.ndarray
    n_dim: int
    value_names: list[str]  # the free vector's pieces (PyMC value variables), in order
    value_shapes: list[tuple[int, ...]]
    trace_names: list[str]  # every variable nutpie stores, the free ones first
    trace_shapes: list[tuple[int, ...]]
    reparameterized: list[str]  # value variables on a transformed scale (log)
    init: np.ndarray  # the start before jitter (PyMC's support point)


def _shape(model, name: str) -> tuple[int, ...]:
    dims = model.named_vars_to_dims.get(name, ())
    return tuple(len(model.coords[d]) for d in dims)


def _effect_matrix(vpm, name: str, dims: tuple[str, ...], basis: np.ndarray) -> np.ndarray:
    """D × n: the design-cell means per unit of each coordinate of the effect ``name``."""
    spec = vpm.spec
    n = basis.shape[1]
    sizes = [len(spec.coords[d]) for d in dims]
    eff = {"intercept": np.zeros(n), name: basis.T.reshape(n, *sizes)}
    base, rest = design_means(eff, spec, np)
    return full_design_means(base, rest, spec, np).T


def e1_fast_path(vpm) -> tuple[FastE1, tuple] | None:
    """(packed model, its logp and expand C callbacks) for nutpie, or None (logged why)."""
    student = vpm.likelihood == "student"
    fast, why = pack_e1(vpm, None if student else vpm.sufficient_stats(),
                        keep_cell_means=vpm.keep_cell_means)
    if fast is None:
        log.info("compiling the PyMC model: %s", why)
        return None
    if student:  # compiled or loaded from the cache here, and only the one needed
        from .student_callbacks import student_expand_c, student_logp_c

        return fast, (student_logp_c, student_expand_c)
    from .e1_callbacks import e1_expand_c, e1_logp_c

    return fast, (e1_logp_c, e1_expand_c)


def free_layout(model) -> tuple[list[str], list[tuple[int, ...]], dict[str, int]]:
    """The free vector: PyMC's value variables in order (names, shapes, each random
    variable's offset)."""
    names, shapes, offsets, at = [], [], {}, 0
    for rv in model.free_RVs:
        shape = _shape(model, rv.name)
        names.append(model.rvs_to_values[rv].name)
        shapes.append(shape)
        offsets[rv.name] = at
        at += math.prod(shape)
    return names, shapes, offsets


def trace_layout(model, names: list[str], shapes: list, offsets: dict[str, int], copy_op: int,
                 op_of, skip: frozenset = frozenset(), extra: tuple = ()
                 ) -> tuple[tuple | None, str]:
    """What nutpie stores per draw: each piece of the free vector (``copy_op`` from its offset;
    the names in ``skip`` left out), ``extra`` as (name, shape, op kind), then every other
    posterior variable of the PyMC model in its order, ``op_of(name, at, size)`` giving its ops
    (kind, argument, position, size) or None when the kernels do not know it. Returns
    ((ops, names, shapes), "") or (None, why)."""
    ops, t_names, t_shapes, at = [], [], [], 0
    for rv, name, shape in zip(model.free_RVs, names, shapes, strict=True):
        if name in skip:
            continue
        ops.append((copy_op, offsets[rv.name], at, math.prod(shape)))
        t_names.append(name)
        t_shapes.append(shape)
        at += math.prod(shape)
    for name, shape, kind in extra:
        ops.append((kind, 0, at, math.prod(shape)))
        t_names.append(name)
        t_shapes.append(shape)
        at += math.prod(shape)
    for var in model.unobserved_value_vars:
        if var.name in names:
            continue
        shape = _shape(model, var.name)
        got = op_of(var.name, at, math.prod(shape))
        if got is None:
            return None, f"the fast path does not know the variable {var.name}"
        ops += got
        t_names.append(var.name)
        t_shapes.append(shape)
        at += math.prod(shape)
    return (ops, t_names, t_shapes), ""


def support_point(model, value_names: list[str]) -> np.ndarray:
    """The PyMC model's initial point (support points, on the transformed scale) as the free
    vector: where nutpie starts a PyMC model before its jitter (a Student-t chain started at
    ν − 2 = 1 instead of 20 could stick in the ν → 2 corner)."""
    point = model.initial_point()
    return np.concatenate([np.ravel(point[name]) for name in value_names])


def reparameterized(model) -> list[str]:
    return [model.rvs_to_values[rv].name for rv in model.free_RVs
            if model.rvs_to_transforms.get(rv) is not None]


def pack_e1(vpm, stats: SufficientStats | None, fold: bool | None = None,
            keep_cell_means: bool = False) -> tuple[FastE1 | None, str]:
    """The fast path's arrays for a ``VariancePartitionModel``; (None, why) when a prior or a
    variable of its PyMC model has no kernel. ``stats``: the Gaussian likelihood's (None under
    Student-t); ``keep_cell_means``: Student-t's cell latents in the trace (else only their
    realised mean squared residual)."""
    model = vpm.model or vpm.build_model()
    spec, priors = vpm.spec, vpm.priors
    comps = list(spec.components)
    cidx = {c: i for i, c in enumerate(comps)}
    by_sigma = {SIGMA_PRIORS[c]: c for c in comps}
    p = Pack()
    h = p.header
    student = vpm.likelihood == "student"
    if not student:
        pack_likelihood(p, stats, fold=fold)
    cell_x = nu_x = -1
    budget = vpm.prior_structure == "budget"
    names, shapes, offsets = free_layout(model)
    comp_x = np.zeros(len(comps), dtype=np.int64)
    comp_prior = np.zeros((len(comps), 4))
    blocks, block_of = [], {}
    K = len(spec.coords["task"])
    for rv in model.free_RVs:
        name, xo = rv.name, offsets[rv.name]
        n = math.prod(_shape(model, name))
        if name == "log_variance":
            comp_x[:] = xo + np.arange(len(comps))
        elif name in by_sigma:
            code = encode(priors[name], positive=True)
            if code is None:
                return None, f"no kernel for the prior of {name} ({priors[name].distribution})"
            comp_x[cidx[by_sigma[name]]] = xo
            comp_prior[cidx[by_sigma[name]]] = code
        elif name == "intercept":
            code = encode(priors["intercept"], positive=False)
            if code is None:
                return None, "no kernel for the intercept's prior"
            blocks.append((xo, 1, p.f(code), ek.OWN_PRIOR, p.f(np.ones((spec.n_design, 1))),
                           -1, ek.TO_BASE))
        elif name == "cell_mean" and student:
            cell_x = xo
        elif name == "nu_minus_2" and student:
            nu_code = encode(priors["nu_minus_2"], positive=True)
            if nu_code is None:
                return None, "no kernel for the prior of nu_minus_2"
            nu_x = xo
        elif name == "llm_within_family":
            basis = within_family_basis(spec.llm_family)
            block_of["llm_effect"] = len(blocks)
            blocks.append((xo, n, cidx["llm"], ek.CENTRED,
                           p.f(_effect_matrix(vpm, "llm_effect", ("llm",), basis)), p.f(basis),
                           ek.TO_MEANS))
        elif name == "tau_residual":
            code = encode(priors["tau_residual"], positive=True)
            if code is None:
                return None, "no kernel for the prior of tau_residual"
            h[ek.H_TAU] = xo
            tau_code = code
        elif name == "residual_task_log_sd_free":
            h[ek.H_ZRES] = xo
        elif name.endswith(("_free", "_z")):
            eff = name.rsplit("_", 1)[0]
            centred = name.endswith("_free")
            if eff == "reference_effect":
                comp, dims = "reference", ("expert",)
            else:
                comp = next((c for c, (v, _) in EFFECTS.items() if v == eff), None)
                if comp is None or comp not in cidx:
                    return None, f"the fast path does not know the variable {name}"
                dims = EFFECTS[comp][1]
            basis = zero_sum_basis([len(spec.coords[d]) for d in dims])
            block_of[eff] = len(blocks)
            kind = ek.CENTRED if centred else ek.NON_CENTRED
            if eff == "reference_effect":
                blocks.append((xo, n, cidx[comp], kind, -1, p.f(basis), ek.TO_OFFSETS))
            else:
                blocks.append((xo, n, cidx[comp], kind, p.f(_effect_matrix(vpm, eff, dims, basis)),
                               p.f(basis), ek.TO_BASE if eff == "task_effect" else ek.TO_MEANS))
        else:
            return None, f"the fast path does not know the variable {name}"
    if student:
        pack_student(p, vpm, cell_x, nu_x, nu_code)
    base = len(p.sections)
    h[ek.H_HEAD] = base
    aggs = budget_aggregates(comps) if budget else present_aggregates(comps)
    agg_names = list(aggs)
    agg_of = np.zeros(len(comps), dtype=np.int64)
    for a, members in enumerate(aggs.values()):
        for c in members:
            agg_of[cidx[c]] = a
    agg_a = np.ones(len(aggs))
    share_b = np.ones(len(comps))
    dirc = np.zeros(1 + len(aggs))
    total = np.zeros(4)
    if budget:
        code = encode(priors["sigma_total"], positive=True)
        if code is None:
            return None, "no kernel for the prior of sigma_total"
        total = code
        if len(aggs) > 1:
            pa = priors["aggregate_shares"]
            if pa.distribution != "Dirichlet":
                return None, "aggregate_shares is not a Dirichlet"
            agg_a = np.asarray(pa.parameters["a"], dtype=float)
            dirc[0] = math.lgamma(agg_a.sum()) - sum(math.lgamma(a) for a in agg_a)
        for a, (agg, members) in enumerate(aggs.items()):
            if len(members) > 1:
                ps = priors[f"shares_{agg}"]
                if ps.distribution != "Dirichlet":
                    return None, f"shares_{agg} is not a Dirichlet"
                b = np.asarray(ps.parameters["a"], dtype=float)
                share_b[[cidx[c] for c in members]] = b
                dirc[1 + a] = math.lgamma(b.sum()) - sum(math.lgamma(x) for x in b)
    chain = spec.chain
    levels, subs = (spec.levels, []) if student else (chain.parents, chain.sub_components)
    missing = [n for n, _ in levels if n not in cidx] + [c for c in subs if c not in cidx]
    if missing:
        return None, f"no variance component for the level(s) {', '.join(missing)}"
    sections = [
        p.i(comp_x), p.f([vpm.kappa(c) for c in comps]), p.f(comp_prior), p.i(agg_of),
        p.f(agg_a), p.f(share_b), p.f(total), p.f(dirc),
        p.i([cidx[name] for name, _ in levels]),
        p.i([cidx[c] for c in subs]),
        p.i(np.array(blocks, dtype=np.int64).ravel()),
        p.f(tau_code if K > 1 else np.zeros(4)),
        p.f(zero_sum_basis([K]) if K > 1 else np.zeros(0)),
        p.f(vpm.task_weight),
    ]
    assert sections[0] == base + ek.S_COMPX and sections[-1] == base + ek.S_TWEIGHT
    def op_of(nm: str, at: int, size: int) -> list | None:
        if nm in offsets:  # a free variable on its transformed (log) scale: its value
            op = (ek.OP_EXP, offsets[nm])
        elif nm == "sigma_total":
            op = (ek.OP_TOTAL, 0)
        elif nm in by_sigma:
            op = (ek.OP_SIGMA, cidx[by_sigma[nm]])
        elif nm in block_of:
            op = (ek.OP_EFFECT, block_of[nm])
        elif nm == "residual_task_log_sd":
            op = (ek.OP_RES_LOG_SD, 0)
        elif nm == "sigma_residual_task":
            op = (ek.OP_RES_SD, 0)
        else:
            return None
        return [(*op, at, size)]

    # Student-t's cell latents: 46,200 × draws at reference size (1.5 GB), unless asked for;
    # their realised mean squared residual instead.
    trace, why = trace_layout(
        model, names, shapes, offsets, ek.OP_COPY, op_of,
        skip=frozenset() if keep_cell_means else frozenset({"cell_mean"}),
        extra=((RESIDUAL_MEAN_SQUARE, (), ek.OP_RESID_MS),) if student else ())
    if trace is None:
        return None, why
    ops, trace_names, trace_shapes = trace
    p.i(np.array(ops, dtype=np.int64).ravel())
    p.i([len(m) for m in aggs.values()])
    p.i([cidx["residual"]])
    p.i([cidx.get("unit:task" if student else chain.leaf_component, -1)])
    h[ek.H_NCOMP], h[ek.H_BUDGET], h[ek.H_NB] = len(comps), int(budget), len(blocks)
    h[ek.H_K], h[ek.H_RES] = K, cidx["residual"]
    h[ek.H_NA], h[ek.H_NX], h[ek.H_NOPS] = len(agg_names), sum(math.prod(s) for s in shapes), \
        len(ops)
    F, Z = p.arrays()
    return FastE1(F, Z, int(h[ek.H_NX]), names, shapes, trace_names, trace_shapes,
                  reparameterized(model), support_point(model, names)), ""
