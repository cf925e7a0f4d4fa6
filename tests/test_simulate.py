import numpy as np
import pytest

from misalign.data import load_ratings
from misalign.data.components import PARTITION
from misalign.data.simulate import PRESETS, simulate


def test_small_study_shape_and_truth(small_study, tmp_path):
    cfg = small_study.config
    n_llm = cfg.n_units * len(cfg.tasks) * len(cfg.llms) * len(cfg.prompts)
    r = small_study.ratings
    assert (r["rater_kind"] == "llm").sum() == n_llm
    assert set(r.loc[r.rater_kind == "expert", "prompt"]) == {""}
    for scale in ("expert-sd", "raw"):
        t = small_study.truth["error_scales"][scale]
        assert sum(t["shares"].values()) == pytest.approx(1.0)
        assert sum(t["aggregates"][k] for k in PARTITION) == pytest.approx(1.0)
    # Written files pass the package's own validation.
    paths = small_study.write(tmp_path, fmt="csv")
    table = load_ratings(paths["ratings"], tasks=paths["tasks"])
    assert len(table.ratings) == len(r) and table.dropped.empty
    assert set(small_study.teachers.columns) == {"teacher_id", "true_quality", "value_added"}
    assert small_study.llms["benchmark"].between(0, 1).all()


def test_reference_design_size():
    cfg = PRESETS["reference"]
    n = cfg.n_units * len(cfg.tasks) * len(cfg.llms) * len(cfg.prompts)
    assert 6_000 <= cfg.n_units <= 7_000 and 1.0e6 <= n <= 1.2e6


def test_reference_truth_is_calibrated():
    """The reference preset's truth matches STUDY.md: attributable ≈ 0.15, shared ≈ 0.5."""
    study = simulate("reference")
    agg = study.truth["error_scales"]["expert-sd"]["aggregates"]
    assert agg["attributable"] == pytest.approx(0.15, abs=0.02)
    assert agg["shared"] == pytest.approx(0.5, abs=0.03)


def test_scores_are_on_each_task_scale(small_study):
    r = small_study.ratings.merge(small_study.tasks, on="task")
    assert (r["score"] >= r["scale_min"]).all() and (r["score"] <= r["scale_max"]).all()
    assert np.allclose(r["score"], np.round(r["score"]))


def test_scaled_study_and_categorical_storage(tmp_path):
    """--scale multiplies teachers; text columns stay categorical from simulation to the model."""
    import pandas as pd

    from misalign.data import build_misalignment

    half = simulate("small", scale=0.5, compute_truth=False)
    assert half.config.n_teachers == PRESETS["small"].n_teachers // 2
    r = half.ratings
    assert all(isinstance(r[c].dtype, pd.CategoricalDtype) for c in r.columns if c != "score")
    paths = half.write(tmp_path)  # Parquet
    table = load_ratings(paths["ratings"], tasks=paths["tasks"])
    assert isinstance(table.ratings["unit_id"].dtype, pd.CategoricalDtype)
    from_file = build_misalignment(table)
    in_memory = build_misalignment(half.table())
    # Same content, same hash, whether read back or built in memory (or held as plain strings).
    assert from_file.data_hash() == in_memory.data_hash()
    as_str = half.table()
    as_str.ratings = as_str.ratings.astype({c: str for c in r.columns if c != "score"})
    assert build_misalignment(as_str).data_hash() == in_memory.data_hash()
    np.testing.assert_array_equal(from_file.cell, in_memory.cell)


def test_bias_truth_against_a_direct_population_mean(small_study):
    """The truth's biases are the population's mean errors: checked against the plain mean of
    an independently drawn population (another random stream, same fixed effects), not through
    the accumulator that computes the truth."""
    from misalign.data.simulate import _block, _errors, _expert_sd, _fixed_effects

    cfg = small_study.config
    rng = np.random.default_rng(cfg.seed)
    fx = _fixed_effects(cfg, rng)
    sd = _expert_sd(_block(cfg, fx, rng, cfg.n_teachers))
    e = _errors(_block(cfg, fx, np.random.default_rng([cfg.seed, 99]), 2000), sd)
    truth = small_study.truth["error_scales"]["expert-sd"]
    assert truth["bias"]["overall"] == pytest.approx(e.mean(), abs=0.02)
    for i, (llm, _) in enumerate(cfg.llms):
        assert truth["bias"]["llm"][llm] == pytest.approx(e[:, :, i].mean(), abs=0.02)
    assert truth["bias"]["llm_prompt"][f"{cfg.llms[0][0]} × {cfg.prompts[1]}"] == \
        pytest.approx(e[:, :, 0, 1].mean(), abs=0.02)
    assert truth["total_error_sd"] == pytest.approx(e.std(), abs=0.03)
