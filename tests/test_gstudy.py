"""The G-study of expert ratings: likelihood, recovery, decision study, noise ceiling, the real
NCTE file against an independent REML fit, and the CLI."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from misalign.data import ValidationError
from misalign.data.experts import read_expert_long, read_ncte_class
from misalign.data.simulate_experts import simulate_experts
from misalign.inference.gstudy import fit_gstudy, load_gstudy
from misalign.inference.reliability import (
    coefficients,
    decision_study,
    disattenuate,
    noise_ceiling,
    reliability,
    smallest_design,
)
from misalign.models.gstudy import GStudyModel
from misalign.models.likelihood import SufficientStats, gaussian_marginal_logp
from misalign.models.stacked import StackedStats, stacked_marginal_logp
from tests.collect_support import cli
from tests.conftest import NCTE

REAL_DIMS = ("CLPC", "CLBM", "CLINSTD", "CLQF")


def test_stacked_likelihood_equals_the_sum_of_per_dimension_likelihoods():
    rng = np.random.default_rng(0)
    ratings, _ = simulate_experts(n_teachers=12, lessons=3, segments=3, n_raters=5,
                                  dimensions=("A", "B", "C"), seed=2)
    f = ratings.frame.sample(frac=0.8, random_state=1)  # unequal cells, missing ratings
    f["school"] = "S" + (f["teacher"].str[1:].astype(int) // 3).astype(str)  # 4 schools
    m = GStudyModel(type(ratings)(f.reset_index(drop=True), "t", {}, []), facets=("school",))
    n_dim, n_rater = len(m.dims), len(m.coords["rater"])
    fvec = rng.normal(size=(n_dim, n_rater))
    s_cell, s_res, s_t, s_s = rng.uniform(0.2, 1.0, size=(4, n_dim))
    a = m._stacked()
    st = StackedStats.build(a["y"], a["group"], a["group"] * n_rater + a["rater"],
                            n_dim * n_rater, a["lesson"], m.parents, n_dim)
    stacked = stacked_marginal_logp(st, fvec.ravel(), np.arange(n_dim * n_rater) // n_rater,
                                    s_cell, s_res, {"teacher": s_t, "school": s_s}, np,
                                    lambda x, i, n: np.bincount(i, weights=x, minlength=n))
    total = 0.0
    for j, d in enumerate(m.dims):
        lessons, cell = np.unique(d.lesson, return_inverse=True)
        teachers, t_idx = np.unique(m.lesson_teacher[lessons], return_inverse=True)
        _, s_idx = np.unique(m.parents[1][1][teachers], return_inverse=True)
        stats = SufficientStats.from_arrays(d.y, d.rater, n_rater, cell,
                                            [("teacher", t_idx), ("school", s_idx)],
                                            grouped=False)
        total += gaussian_marginal_logp(stats, fvec[j], s_cell[j], s_res[j],
                                        {"teacher": s_t[j], "school": s_s[j]})
    assert stacked == pytest.approx(total, rel=1e-10)


@pytest.fixture(scope="module")
def simulated_fit():
    ratings, truth = simulate_experts(n_teachers=150, lessons=4, segments=4, n_raters=15,
                                      seed=4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        res = fit_gstudy(ratings, draws=500, tune=500, chains=4, seed=3, progressbar=False,
                         target_accept=0.8)
    return res, truth


def test_recovery_true_shares_inside_94_hdi(simulated_fit):
    res, truth = simulated_fit
    tab = res.table.set_index("component")
    for comp, share in truth.shares.items():
        lo, hi = tab.loc[comp, "super_lower"], tab.loc[comp, "super_upper"]
        assert lo <= share <= hi, f"{comp}: true {share:.3f} outside [{lo:.3f}, {hi:.3f}]"
    assert res.gate.passed, res.gate.message()


def test_decision_study_matches_a_hand_computation(simulated_fit):
    res, _ = simulated_fit
    v = res.variances.sel(dimension="D1")
    tau, les, rat, e = (v.sel(component=c) for c in ("teacher", "lesson", "rater", "residual"))
    n, m, r = 4, 3, 2
    rel_hand = (tau / (tau + les / n + e / (n * m * r))).mean().item()
    dep_hand = (tau / (tau + les / n + rat / r + e / (n * m * r))).mean().item()
    sel = {"dimension": "D1", "n_lessons": n, "n_segments": m, "n_raters": r}
    assert float(res.dstudy["generalizability_mean"].sel(sel)) == pytest.approx(rel_hand)
    assert float(res.dstudy["dependability_mean"].sel(sel)) == pytest.approx(dep_hand)
    # And with numbers written out: τ = 0.3, σ²_l = 0.2, σ²_R = 0.1, σ²_e = 0.6.
    comps = xr.DataArray([0.3, 0.2, 0.1, 0.6], dims="component",
                         coords={"component": ["teacher", "lesson", "rater", "residual"]})
    g, d = coefficients(comps, 2, 4, 1)
    assert float(g) == pytest.approx(0.3 / (0.3 + 0.1 + 0.075))
    assert float(d) == pytest.approx(0.3 / (0.3 + 0.1 + 0.1 + 0.075))
    grid = decision_study(comps, {"n_lessons": (1, 2, 4, 8), "n_segments": (4,),
                                  "n_raters": (1,)})
    best = smallest_design(grid["generalizability"], target=0.8)
    # Eρ²(n) = 0.3 / (0.3 + 0.2/n + 0.15/n): 0.8 needs n ≥ 4.67, so n = 8 in this grid.
    assert best["n_lessons"] == 8 and best["ratings"] == 32


def test_noise_ceiling_and_disattenuation():
    comps = xr.DataArray([0.3, 0.2, 0.1, 0.6], dims="component",
                         coords={"component": ["teacher", "lesson", "rater", "residual"]})
    assert float(reliability(comps, "segment")) == pytest.approx(0.5 / 1.2)
    assert float(reliability(comps, "lesson", n_segments=4)) == pytest.approx(
        0.5 / (0.5 + 0.1 + 0.15))
    assert float(reliability(comps, "teacher", n_segments=4, n_lessons=4)) == pytest.approx(
        0.3 / (0.3 + 0.05 + 0.025 + 0.0375))
    c = noise_ceiling(comps, "segment")
    assert float(c) == pytest.approx(np.sqrt(0.5 / 1.2))
    assert float(disattenuate(0.4, c)) == pytest.approx(0.4 / np.sqrt(0.5 / 1.2))
    # More raters in the reference raise the ceiling.
    assert float(noise_ceiling(comps, "segment", n_raters=3)) > float(c)


def test_results_file_round_trip(simulated_fit, tmp_path):
    res, _ = simulated_fit
    path = res.save(tmp_path / "g.nc")
    back = load_gstudy(path)
    pd.testing.assert_frame_equal(back.table, res.table)
    assert back.model.config["components"] == ["teacher", "lesson", "rater", "residual"]
    import arviz as az

    assert "rater" in az.from_netcdf(path).posterior["rater_effect"].dims


def test_ncte_with_school_and_district_facets_runs():
    if not NCTE.exists():
        pytest.skip("shared NCTE data not present")
    r = read_ncte_class(NCTE).subset(["CLPC"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        res = fit_gstudy(r, facets=("school", "district"), draws=100, tune=100, chains=2,
                         progressbar=False, target_accept=0.8)
    assert list(res.variances["component"].values) == [
        "teacher", "school", "district", "lesson", "rater", "residual"]
    assert res.model.coords["school"][0] != "" and len(res.model.coords["district"]) == 4
    assert any("no SCHOOLID" in n for n in res.notes)
    with pytest.raises(ValueError, match="only available without --correlated"):
        GStudyModel(read_ncte_class(NCTE).subset(["CLPC", "CLBM"]), facets=("school",),
                    correlated=True)


def test_ncte_reader_reports_missing_per_dimension():
    if not NCTE.exists():
        pytest.skip("shared NCTE data not present")
    r = read_ncte_class(NCTE)
    assert r.missing["CLPC"] == 21 and r.missing["CLCU"] == 34 and len(r.missing) == 12
    assert len(r.frame[r.frame.dimension == "CLPC"]) == 6206 - 21
    # Said only when the school facet is fitted (it is about how schools are formed).
    assert any("no SCHOOLID" in n for n in r.facet_notes["school"]) and not r.notes


def test_long_reader_and_nesting_errors(tmp_path):
    p = tmp_path / "experts.csv"
    rows = ["unit_id,task,rater,rater_kind,prompt,score,transcript_id,teacher_id",
            "s1,CLPC,E1,expert,,4,L1,T1", "s2,CLPC,E2,expert,,5,L1,T1",
            "s3,CLPC,E1,expert,,,L2,T2", "s4,CLPC,E1,expert,,3,L2,T2"]
    p.write_text("\n".join(rows) + "\n")
    r = read_expert_long(p)
    assert len(r.frame) == 3 and r.missing == {"CLPC": 1}
    assert "left out" in r.notes[0]
    p.write_text("\n".join(rows[:3] + ["s3,CLPC,E1,expert,,3,L1,T9"]) + "\n")
    with pytest.raises(ValidationError,
                       match="transcript_id 'L1' belongs to more than one teacher_id"):
        read_expert_long(p)


def test_ncte_cli_agrees_with_independent_reml(tmp_path):
    if not NCTE.exists():
        pytest.skip("shared NCTE data not present")
    from tests.reml import reml_components

    out = tmp_path / "gstudy.nc"
    r = cli("gstudy", str(NCTE), "--format", "ncte-class", "--dimensions", ",".join(REAL_DIMS),
            "--json", "--out", str(out), "--no-progress")
    assert r.returncode == 0, r.stderr
    payload = json.loads(r.stdout)
    assert "passed" in payload["gate"]
    comps = pd.DataFrame(payload["components"])
    frame = read_ncte_class(NCTE).frame
    for dim in REAL_DIMS:
        rm = reml_components(frame[frame.dimension == dim])
        assert rm["converged"]
        ours = comps[comps.dimension == dim].set_index("component")["super_mean"]
        for comp, share in rm["share"].items():
            assert abs(ours[comp] - share) < 0.03, (dim, comp, ours[comp], share)
    assert load_gstudy(out).dimensions == list(REAL_DIMS)
    text = cli("gstudy", str(NCTE), "--format", "ncte-class", "--dimensions", "CLPC",
               "--draws", "200", "--tune", "200", "--out", str(tmp_path / "one.nc"),
               "--no-progress", env={"COLUMNS": "160"})
    assert text.returncode == 0, text.stderr
    assert "G-study: variance components" in text.stdout
    assert "Decision study" in text.stdout and "smallest design reaching 0.8" in text.stdout
    assert "upper bound" in text.stdout and "SCHOOLID" not in text.stderr


@pytest.mark.slow
@pytest.mark.parametrize("options", [{"correlated": True}, {"likelihood": "student"}],
                         ids=["correlated", "student"])
def test_recovery_of_the_other_variants(options):
    ratings, truth = simulate_experts(n_teachers=150, lessons=4, segments=4, n_raters=15,
                                      dimensions=("A", "B"), teacher_corr=0.6, seed=6)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        res = fit_gstudy(ratings, draws=1000, tune=1000, chains=4, seed=5, progressbar=False,
                         target_accept=0.8, **options)
    tab = res.table
    for dim in ("A", "B"):
        t = tab[tab.dimension == dim].set_index("component")
        for comp, share in truth.shares.items():
            assert t.loc[comp, "super_lower"] <= share <= t.loc[comp, "super_upper"], \
                (dim, comp, share, t.loc[comp].to_dict())
    if options.get("correlated"):
        import arviz as az

        corr = res.model.idata["posterior"]["teacher_corr"].sel(dimension="A",
                                                                  dimension_bis="B")
        h = az.hdi(corr, prob=0.94, dim=["chain", "draw"])
        assert float(h.sel(ci_bound="lower")) <= 0.6 <= float(h.sel(ci_bound="upper"))
    assert res.gate.passed, res.gate.message()
