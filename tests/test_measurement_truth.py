"""The simulator's truth of the joint model's quantities, against independent computations:
correlations computed directly from a large simulated data set, and the experts' expected score
by Monte Carlo."""

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from misalign.data.measurement import SOURCE_SEPARATOR
from misalign.data.measurement_truth import expected_expert
from misalign.data.simulate import PRESETS, TASKS, simulate

N_TEACHERS = 1500  # 6,000 units: sampling SD of a correlation ≈ 0.01


def _wide(study) -> tuple[pd.DataFrame, pd.Series]:
    """LLM scores per (unit, task) × source (replicate 1), and the first expert's score."""
    r = study.ratings
    llm = r[r["rater_kind"] == "llm"]
    src = llm["rater"].astype(str) + SOURCE_SEPARATOR + llm["prompt"].astype(str)
    wide = llm.assign(source=src.to_numpy()).pivot_table(
        index=["unit_id", "task"], columns="source", values="score", observed=True)
    ex = r[r["rater_kind"] == "expert"].astype({"unit_id": str, "task": str})
    first = ex.groupby(["unit_id", "task"], observed=True)["score"].first()
    return wide, first


@pytest.fixture(scope="module")
def big():
    return simulate(replace(PRESETS["small"], n_teachers=N_TEACHERS, population_factor=10))


def test_cell_correlations_equal_the_datas_own(big):
    """A single rating's correlations between sources and with a single expert, computed by
    pandas on 6,000 units of rounded scores, equal the truth from the (separately drawn)
    population within sampling error."""
    wide, first = _wide(big)
    t = big.truth["measurement"]
    names = t["sources"]
    for task in ("CLPC", "SMQR"):
        w = wide.xs(task, level="task")[names]
        e = first.xs(task, level="task").reindex(w.index.astype(str))
        tt = t["levels"]["cell"][task]
        corr = np.corrcoef(w.to_numpy().T)
        assert np.abs(corr - np.array(tt["sources"])).max() < 0.03
        with_expert = [np.corrcoef(w[s].to_numpy(), e.to_numpy())[0, 1] for s in names]
        assert np.abs(np.array(with_expert) - np.array(tt["expert"])).max() < 0.03


def test_teacher_level_quality_on_continuous_scores():
    """On continuous scores a teacher's true quality is linear in the simulator's teacher
    quality, so the truth's teacher-level correlations with quality (and the experts' ceiling)
    are the data's own correlations of teacher means with ``true_quality``."""
    study = simulate(replace(PRESETS["small"], n_teachers=N_TEACHERS, population_factor=10,
                             continuous=True))
    r = study.ratings[study.ratings["task"].astype(str) == "CLPC"]
    q = study.teachers.set_index("teacher_id")["true_quality"]
    t = study.truth["measurement"]["levels"]["teacher"]["CLPC"]
    llm = r[r["rater_kind"] == "llm"]
    src = llm["rater"].astype(str) + SOURCE_SEPARATOR + llm["prompt"].astype(str)
    names = study.truth["measurement"]["sources"]
    means = llm.assign(source=src.to_numpy()).pivot_table(
        index="teacher_id", columns="source", values="score", observed=True)[names]
    qq = q.reindex(means.index.astype(str)).to_numpy()
    got = [np.corrcoef(means[s].to_numpy(), qq)[0, 1] for s in names]
    assert np.abs(np.array(got) - np.array(t["quality"])).max() < 0.03
    ex = r[r["rater_kind"] == "expert"].astype({"unit_id": str, "teacher_id": str})
    first = ex.groupby("unit_id")[["score", "teacher_id"]].first()
    e_mean = first.groupby("teacher_id")["score"].mean().reindex(means.index.astype(str))
    assert np.corrcoef(e_mean.to_numpy(), qq)[0, 1] == pytest.approx(t["ceiling"], abs=0.04)


def test_expected_expert_score_by_monte_carlo():
    """τ(θ): rounded, clipped c + s(θ + ρ + ε) averaged over raters and noise."""
    rng = np.random.default_rng(0)
    severity = rng.normal(0, 0.3, 6)
    lo, hi, c, s = TASKS["SMQR"]
    for theta in (-2.0, -0.3, 0.0, 0.8, 2.5):
        rho = severity[rng.integers(0, 6, 400_000)]
        x = np.clip(np.rint(c + s * (theta + rho + rng.normal(0, 0.5, rho.size))), lo, hi)
        assert expected_expert(np.array(theta), severity, 0.5, c, s, lo, hi, False) == \
            pytest.approx(x.mean(), abs=0.006)


def test_value_added_correlations_equal_the_datas_own():
    """E3's truth (teacher-level correlations with value-added, and of each source's
    misalignment) and E4's (the all-sources ensemble and the majority vote), against pandas
    on 1,500 simulated teachers whose value-added also loads on the shared LLM deviation:
    equal within sampling error (SD ≈ 0.025)."""
    study = simulate(replace(PRESETS["small"], n_teachers=N_TEACHERS, population_factor=10,
                             va_shared=0.5))
    wide, first = _wide(study)
    teacher = (study.ratings.astype({"unit_id": str, "teacher_id": str})
               .groupby("unit_id")["teacher_id"].first())
    va = study.teachers.set_index("teacher_id")["value_added"]
    t = study.truth["measurement"]
    worst = 0.0
    for task in ("CLPC", "SMQR"):
        w = wide.xs(task, level="task")
        e = first.xs(task, level="task").reindex(w.index)
        by_teacher = w.groupby(teacher.reindex(w.index).to_numpy()).mean()
        e_t = e.groupby(teacher.reindex(w.index).to_numpy()).mean()
        v = va.reindex(by_teacher.index)
        tt = t["value_added"][task]
        worst = max(worst, abs(e_t.corr(v) - tt["expert"]))
        for i, s in enumerate(t["sources"]):
            worst = max(worst, abs(by_teacher[s].corr(v) - tt["sources"][i]),
                        abs((by_teacher[s] - e_t).corr(v) - tt["misalignment"][i]))
        # E4's "all sources" ensemble: the mean of the sources' single ratings of a cell,
        # against a single expert (cell) and value-added (teacher), by pandas.
        ens, te = t["ensembles"][task]["all sources"], teacher.reindex(w.index).to_numpy()
        worst = max(worst, abs(w.mean(axis=1).corr(e) - ens["cell"]["expert"]),
                    abs(w.mean(axis=1).groupby(te).mean().corr(v) - ens["va"]))
        # E4's majority vote: each cell's most frequent rounded score over the sources (a tie:
        # the mean of the tied scores), by pandas' value counts.
        def vote(row: pd.Series) -> float:
            counts = row.value_counts()
            return float(counts.index[counts == counts.max()].to_numpy(float).mean())

        mv, votes = t["majority_vote"][task], w.apply(vote, axis=1)
        worst = max(worst, abs(votes.corr(e) - mv["cell"]["expert"]),
                    abs(votes.groupby(te).mean().corr(v) - mv["va"]))
        # Value-added loads on the shared deviation: the LLMs' teacher scores track it more
        # than the experts' do.
        assert np.mean(tt["sources"]) > tt["expert"]
    assert worst < 0.08, worst


def test_the_paper_preset_has_the_reference_studys_findings():
    """``--preset paper``'s truth (no fit): LLMs agree with each other more than with an
    expert; their teacher scores align with value-added below the experts' and below 0 (what
    they all share goes against learning) and their misalignment negatively; ensembles are no
    better than the median single source; every loading is below 1; benchmarks are drawn
    without regard to the LLMs' biases."""
    study = simulate("paper")
    t = study.truth["measurement"]
    assert study.config.benchmark_signal == 0.0
    for task in t["tasks"]:
        cell = t["levels"]["cell"][task]
        assert cell["mean_inter"] > cell["mean_expert"]
        va = t["value_added"][task]
        median = float(np.median(va["sources"]))
        assert median < 0 < va["expert"] < va["quality"]
        assert max(va["misalignment"]) < 0
        assert all(e["va"] <= median + 0.005 for e in t["ensembles"][task].values()), task
        assert max(t["net"][task]["loading"]) < 1
