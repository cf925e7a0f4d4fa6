"""The paper-shaped preset (``--preset paper``): recovery of E2–E5 and the reference study's
findings read from the package's own output; on the small preset, where its truth differs
(ensembles there do align with value-added a little better than the median source), the output
differs with it."""

import warnings
from dataclasses import replace

import pytest
from measurement_checks import (
    check_by_task,
    check_recovery,
    coverage,
    design_correlation_coverage,
    ensemble_coverage,
    findings,
    fit,
    floor_share_at,
    true_findings,
    true_floor_share_at,
    value_added_coverage,
)

from misalign.data.ensembles import MAJORITY
from misalign.data.simulate import PRESETS, simulate
from misalign.models.base import SAMPLE_DIMS

# Measured 2026-11-29 (one fit per seed, 82–86 s), share inside the 94% HDIs,
# E2 + net / E3 / E4 (the majority vote among E4's 392):
#   7: 89.2 / 92.9 / 97.2%   8: 79.2 / 92.3 / 80.9%   9: 90.5 / 85.7 / 94.6%
#   10: 90.0 / 100 / 99.5%
# E2's misses are the ordinal scales': this preset's LLMs err mostly alike, so their ratings
# are precise and rounding to 1–3 or 1–7 points (which the Gaussian model does not see) shows;
# the same data unrounded (``continuous=True``, seed 10) recover 99.1 / 100 / 97.9%. Seed 8's
# 80 teachers vary more in true quality than the population (0.365 against 0.30: +1.4 SD of a
# sample variance), and the seven tasks share them, so every task's teacher-level quantities
# lean the same way. E3 misses a whole task at a time (all its sources together). The default
# suite checks the seed the preset ships with; the slow suite's calibration covers 7–10.
PAPER_SEED = 10


@pytest.fixture(scope="module")
def paper():
    study = simulate(replace(PRESETS["paper"], seed=PAPER_SEED))
    return study, fit(study)


def test_recovery_on_the_paper_preset(paper):
    """Gate passed; E3, E4 (majority vote among them) and E5's expected correlations against
    their truths with the small preset's rules; E2 and the net split at least 85% inside (the
    ordinal scales' misfit, above), none more than 0.1 outside."""
    study, res = paper
    assert PRESETS["paper"].seed == PAPER_SEED
    assert res.gate.passed, res.gate.message()
    rows = [r for r in coverage(res, study.truth) if r["kind"] != "net share (all tasks)"]
    assert sum(r["inside"] for r in rows) >= 0.85 * len(rows)
    assert all(r["inside"] or min(abs(r["truth"] - r["lower"]), abs(r["truth"] - r["upper"]))
               <= 0.1 for r in rows)
    check_recovery(value_added_coverage(res, study.truth), min_rows=182)
    check_recovery(ensemble_coverage(res, study.truth), inside_share=0.94, min_rows=392)
    check_by_task(design_correlation_coverage(res, study.truth))


def test_the_reference_studys_findings_from_the_output(paper):
    """The output says what the reference study found (and this preset's truth has): LLMs
    agree with each other more than with an expert (P > 0.95); their teacher scores align with
    value-added below the experts' (P > 0.9 in every task); neither the equal-weight nor the
    benchmark-weighted ensemble nor the majority vote is more aligned with it than the median
    single source. (On the small preset the truth has the ensembles a little above the median
    source, and the output follows it: ``test_measurement.py``.)"""
    study, res = paper
    got, true = findings(res), true_findings(study.truth)
    assert got["p_inter_above_expert"] > 0.95 and true["inter_minus_expert"] > 0
    assert got["llms_minus_experts_va"] < 0 and true["llms_minus_experts_va"] < 0
    gap = res.impact["mean_corr_va"] - res.impact["corr_va_expert"]
    assert float((gap < 0).mean(SAMPLE_DIMS).min()) > 0.9
    for name in ("all sources", "benchmark-weighted", MAJORITY):
        key = f"{name} minus median"
        assert true[key] < 0 and got[key] < 0, (key, got[key], true[key])
    t = res.ensemble_table
    p = t[t["ensemble"].isin(["all sources", "benchmark-weighted"])]["p_below_median_va"]
    assert p.mean() > 0.5


def test_the_decision_study_reaches_its_floor_by_few_llms(paper):
    """E5 from an E1 fit of the same data: averaging 2 of the 4 LLMs over every prompt leaves
    at least 90% of the error as floor, in the output and in the truth's projection (the small
    preset, where per-LLM errors are larger, stays below: ``test_dstudy.py``)."""
    from misalign.data import build_misalignment
    from misalign.inference import fit_e1

    study, _ = paper
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        e1 = fit_e1(build_misalignment(study.table()), draws=1000, tune=1000, chains=4,
                    seed=11, progressbar=False)
    assert floor_share_at(e1, 2) >= 0.9
    assert true_floor_share_at(study.truth, 2, 4, 3, 2) >= 0.9


@pytest.mark.slow
def test_calibration_on_the_paper_preset():
    """Seeds 7–10: gate passed at each; over the four, the mean share inside the 94% HDIs at
    least 90% for E3 and E4 (the majority vote among them) and 85% for E2 + net (ordinal
    scales, above); the paper's findings at every seed; and at seed 10 on
    continuous scores E2 + net at least 98% inside (the misfit is the rounding's)."""
    shares: dict[str, list[float]] = {"E2 + net": [], "E3": [], "E4": []}
    for seed, continuous in ((7, False), (8, False), (9, False), (10, False), (10, True)):
        study = simulate(replace(PRESETS["paper"], seed=seed, continuous=continuous))
        res = fit(study)
        assert res.gate.passed, (seed, res.gate.message())
        e2 = [r for r in coverage(res, study.truth) if r["kind"] != "net share (all tasks)"]
        if continuous:
            assert sum(r["inside"] for r in e2) >= 0.98 * len(e2)
            continue
        for name, rows in (("E2 + net", e2), ("E3", value_added_coverage(res, study.truth)),
                           ("E4", ensemble_coverage(res, study.truth))):
            shares[name].append(float(sum(r["inside"] for r in rows) / len(rows)))
        # The findings at every seed: LLMs below the experts on value-added (a gap of ≈ −0.3),
        # and no ensemble more aligned than the median source by more than 0.01 (the truth's
        # gap is −0.004 to −0.013: at seed 8 the output's was +0.002).
        got, true = findings(res), true_findings(study.truth)
        assert got["llms_minus_experts_va"] < 0 and true["llms_minus_experts_va"] < 0, seed
        for key in ("all sources minus median", "benchmark-weighted minus median"):
            assert got[key] < 0.01 and true[key] < 0, (seed, key, got[key], true[key])
    for name, x in shares.items():
        print(f"{name} coverage per seed:", [round(v, 4) for v in x])
        assert sum(x) / len(x) >= (0.85 if name == "E2 + net" else 0.9), (name, x)
