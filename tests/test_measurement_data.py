"""The joint measurement model's table: scale, columns, tree, value-added, refusals."""

from dataclasses import replace

import numpy as np
import pytest

from misalign.data.measurement import build_measurement
from misalign.data.schema import ValidationError
from misalign.models.measurement_likelihood import (
    MeasurementStats,
    dense_measurement_logp,
    measurement_logp,
)


def test_scale_columns_tree_and_value_added(small_study):
    d = build_measurement(small_study.table(), small_study.teachers)
    f = d.frame
    experts = f[f["kind"] == "expert"]
    for _, g in experts.groupby("task"):
        assert g["y"].mean() == pytest.approx(0.0, abs=1e-12)
        assert g["y"].std(ddof=1) == pytest.approx(1.0, rel=1e-12)
    assert len(d.sources) == 4 * 3 and len(d.raters) == 6
    assert d.n_columns == 7 * (12 + 6)
    # Columns and nodes never cross tasks.
    assert (d.column // (12 + 6) == d.task).all()
    assert (d.cell_task[d.cell] == d.task).all()
    assert (d.teacher_task[d.lesson_teacher[d.cell_lesson]] == d.cell_task).all()
    assert np.isfinite(d.va).all() and len(d.va) == 7 * 40
    assert d.summary()["cells"] == 7 * 160


def test_built_statistics_give_the_dense_density(small_study):
    """Two teachers of one task: the recursion over the built table equals the dense MVN."""
    table = small_study.table()
    r = table.ratings
    keep = r["teacher_id"].astype(str).isin(sorted(r["teacher_id"].astype(str).unique())[:2]) & (
        r["task"].astype(str) == "CLPC")
    d = build_measurement(replace(table, ratings=r[keep].reset_index(drop=True)),
                          small_study.teachers)
    rng = np.random.default_rng(0)
    S, R = len(d.sources), len(d.raters)
    a1 = np.r_[rng.uniform(0.5, 1.0, S), np.ones(R)]
    a2 = np.r_[np.ones(S), np.zeros(R)]
    m = rng.normal(0, 0.3, S + R)
    v = rng.uniform(0.2, 0.6, S + R)
    omega = {lv: tuple(rng.uniform(0.05, 0.5, 2)) for lv in ("cell", "lesson", "teacher")}
    vp = (0.1, 0.4, -0.2, 0.5)
    stats = MeasurementStats.from_arrays(d.y, d.cell, d.column, d.n_columns, d.cell_lesson,
                                         d.lesson_teacher, d.va)
    got = measurement_logp(stats, a1, a2, m, v, omega, vp)
    dense = dense_measurement_logp(d.y, d.cell, d.column, d.cell_lesson, d.lesson_teacher,
                                   a1, a2, m, v, omega, d.va, vp)
    assert got == pytest.approx(dense, abs=1e-8)


def test_data_the_model_cannot_identify_are_refused(small_study):
    table = small_study.table()
    r = table.ratings
    cases = {
        "no expert ratings": r[r["rater_kind"] == "llm"],
        r"1 LLM source\(s\)": r[(r["rater_kind"] == "expert") | (
            (r["rater"].astype(str) == "openai/gpt-4o") & (r["prompt"].astype(str) == "cot"))],
        "rated by both an expert and an LLM": r[(r["rater_kind"] == "expert") & (
            r["task"].astype(str) == "CLPC") | (r["rater_kind"] == "llm") & (
            r["task"].astype(str) == "CLBM")],
    }
    for message, rows in cases.items():
        with pytest.raises(ValidationError, match=message):
            build_measurement(replace(table, ratings=rows.reset_index(drop=True)))


def test_balanced_counts_once_per_task_give_the_same_density(small_study):
    """The small preset is balanced, so the counts are stored once per task and the leaves
    fold into per-task moments; they equal the pair form (no sub-cell terms) and the per-cell
    counts (with and without them), in numpy and PyTensor."""
    from misalign.models.measurement_likelihood import dense_leaves, tree_logp

    d = build_measurement(small_study.table(), small_study.teachers)
    st = d.dense_statistics()
    assert st["N"].shape[1] == 1
    T, S, R = len(d.tasks), len(d.sources), len(d.raters)
    rng = np.random.default_rng(3)
    lam, mu = rng.uniform(0.5, 1.0, (T, S)), rng.normal(0, 0.3, (T, S))
    sig2, mu_e = rng.uniform(0.2, 0.6, (T, S)), rng.normal(0, 0.2, T)
    rho, s2e = rng.normal(0, 0.2, (T, R)), rng.uniform(0.2, 0.5, T)
    tasks = {"cell": d.cell_task, "lesson": d.lesson_task, "teacher": d.teacher_task}
    omega = {lv: tuple(rng.uniform(0.05, 0.5, T)[idx] for _ in range(2))
             for lv, idx in tasks.items()}
    tree = (d.cell_lesson, d.lesson_teacher, len(d.lesson_teacher), len(d.teacher_task))

    def logp(stats, groups=None):
        msg, const = dense_leaves(stats, lam, mu, sig2, mu_e, rho, s2e, groups=groups)
        return const + tree_logp(msg, *tree, omega)

    a1 = np.concatenate([lam, np.ones((T, R))], 1).ravel()
    a2 = np.concatenate([np.ones((T, S)), np.zeros((T, R))], 1).ravel()
    m = np.concatenate([mu, mu_e[:, None] + rho], 1).ravel()
    v = np.concatenate([sig2, np.repeat(s2e[:, None], R, 1)], 1).ravel()
    pairs = MeasurementStats.from_arrays(d.y, d.cell, d.column, d.n_columns, d.cell_lesson,
                                         d.lesson_teacher)
    assert logp(st) == pytest.approx(measurement_logp(pairs, a1, a2, m, v, omega), abs=1e-8)
    assert "S_cross" in st  # the folded leaves (per-task moments) against the per-cell ones
    full = {k: v for k, v in st.items() if k not in ("cells", "S_mean", "S_cross")} | {
        "N": np.repeat(st["N"], st["S"].shape[1], axis=1)}
    llm = np.array([s.split(" × ")[0] for s in d.sources])
    G = (llm[:, None] == np.unique(llm)[None, :]).astype(float)
    groups = {"llm": (G, rng.uniform(0.01, 0.1, T)),
              "family": (np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]]),
                         rng.uniform(0.01, 0.1, T))}
    assert logp(st, groups) == pytest.approx(logp(full, groups), abs=1e-8)
    assert logp(st) == pytest.approx(logp(full), abs=1e-8)
    import pytensor.tensor as pt

    from misalign.models.recursion import pt_segment_sum

    sym_groups = {k: (g, pt.as_tensor(t)) for k, (g, t) in groups.items()}
    msg, const = dense_leaves(st, *(pt.as_tensor(x) for x in (lam, mu, sig2, mu_e, rho, s2e)),
                              xp=pt, segsum=pt_segment_sum, groups=sym_groups)
    sym = const + tree_logp(msg, *tree, omega, pt, pt_segment_sum)
    assert float(sym.eval()) == pytest.approx(logp(full, groups), abs=1e-8)


def test_the_model_graph_with_value_added_equals_the_reference(small_study):
    """The PyMC model's marginal likelihood, value-added included (some teachers without it,
    some with a known error), equals the numpy recursion fed the same parameters at a random
    point, with the value-added standardised here independently."""

    from misalign.models.measurement import MeasurementModel

    table = small_study.table()
    r = table.ratings
    keep = (r["task"].astype(str).isin(["CLPC", "EXPL"])
            & ((r["rater_kind"] == "expert") | (r["prompt"].astype(str) == "base")
               & r["rater"].astype(str).isin(["openai/gpt-4o", "anthropic/claude-3-haiku"])))
    teachers = small_study.teachers.copy()
    teachers.loc[::4, "value_added"] = np.nan
    teachers["va_se"] = np.where(np.arange(len(teachers)) % 3 == 0, 0.3, np.nan)
    teachers.loc[teachers["value_added"].isna(), "va_se"] = np.nan
    d = build_measurement(replace(table, ratings=r[keep].reset_index(drop=True)), teachers)
    model = MeasurementModel(d)
    assert model.sub_levels == [] and "va_rho_quality_room" in model.priors
    pm_model = model.build_model()
    rng = np.random.default_rng(5)
    ip = pm_model.initial_point()
    point = {k: v + rng.normal(0, 0.3, np.shape(v)) for k, v in ip.items()}
    names = ["marginal_loglik", "lambda_source", "mu_source", "noise_sd_source", "mu_expert",
             "sigma_expert", "rater_effect", "va_intercept", "va_sd", "va_rho_quality",
             "va_rho_shared"] + [f"sigma_{p}_{lv}" for p in ("quality", "shared")
                            for lv in ("cell", "lesson", "teacher")]
    fn = pm_model.compile_fn([pm_model[n] for n in names], inputs=pm_model.value_vars,
                             on_unused_input="ignore",
                             point_fn=True)
    got = dict(zip(names, fn(point), strict=True))
    T = len(d.tasks)
    a1 = np.concatenate([got["lambda_source"], np.ones((T, len(d.raters)))], 1).ravel()
    a2 = np.concatenate([np.ones_like(got["lambda_source"]),
                         np.zeros((T, len(d.raters)))], 1).ravel()
    m = np.concatenate([got["mu_source"], got["mu_expert"][:, None] + got["rater_effect"]],
                       1).ravel()
    v = np.concatenate([got["noise_sd_source"] ** 2,
                        np.repeat(got["sigma_expert"][:, None] ** 2, len(d.raters), 1)],
                       1).ravel()
    nodes = {"cell": d.cell_task, "lesson": d.lesson_task, "teacher": d.teacher_task}
    omega = {lv: tuple(got[f"sigma_{p}_{lv}"][idx] ** 2 for p in ("quality", "shared"))
             for lv, idx in nodes.items()}
    # Standardised over the teachers with ratings and value-added, independently of the code.
    rated = set(r.loc[keep, "teacher_id"].astype(str))
    vt = teachers[teachers["teacher_id"].astype(str).isin(rated)
                  & teachers["value_added"].notna()]
    centre, scale = vt["value_added"].mean(), vt["value_added"].std(ddof=0)
    by_name = dict(zip(vt["teacher_id"].astype(str), vt["value_added"], strict=True))
    se = dict(zip(vt["teacher_id"].astype(str), vt["va_se"].fillna(0.0), strict=True))
    va = np.array([(by_name[n] - centre) / scale if n in by_name else np.nan
                   for n in d.teacher_names])
    known = np.array([(se.get(n, 0.0) / scale) ** 2 for n in d.teacher_names])
    t = d.teacher_task
    sd, rq, rs = got["va_sd"][t], got["va_rho_quality"][t], got["va_rho_shared"][t]
    assert (rq**2 + rs**2 < 1).all()
    vp = (got["va_intercept"][t], sd * rq, sd * rs, sd**2 * (1 - rq**2 - rs**2) + known)
    stats = MeasurementStats.from_arrays(d.y, d.cell, d.column, d.n_columns, d.cell_lesson,
                                         d.lesson_teacher, va)
    assert np.isnan(va).any() and (known > 0).any()
    want = measurement_logp(stats, a1, a2, m, v, omega, vp)
    assert float(got["marginal_loglik"]) == pytest.approx(want, abs=1e-8)
