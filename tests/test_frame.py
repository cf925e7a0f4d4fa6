"""The analysis frame: every kind of results file loads through ``misalign.load``, round-trips
with identical tables and a rebuilt model, refuses altered data, and works with ``summary``,
``sensitivity`` and ``prior-check``; Python and the CLI share one default per option."""

from __future__ import annotations

import inspect
import json
import warnings

import numpy as np
import pandas as pd
import pytest
import xarray as xr

import misalign
from misalign.inference import E1Results, GStudyResults
from misalign.models import ResultsFileError
from misalign.models.options import DEFAULTS, SamplerConfig
from tests.collect_support import cli


@pytest.fixture(scope="module")
def gstudy_file(tmp_path_factory):
    from misalign.data.simulate_experts import simulate_experts

    ratings, _ = simulate_experts(n_teachers=40, dimensions=("A", "B"), seed=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        res = misalign.fit_gstudy(ratings, draws=200, tune=200, chains=2, progressbar=False)
    return res, res.save(tmp_path_factory.mktemp("g") / "gstudy.nc")


@pytest.fixture(scope="module")
def e1_file(small_fit, tmp_path_factory):
    return small_fit, small_fit.save(tmp_path_factory.mktemp("e1") / "results.nc")


@pytest.fixture(params=["e1", "gstudy"])
def fitted(request, e1_file, gstudy_file):
    return e1_file if request.param == "e1" else gstudy_file


def _tables(res):
    return {t.key: t.frame for t in res.tables()}


def test_round_trip_through_the_registry(fitted):
    res, path = fitted
    back = misalign.load(path)
    assert type(back) is type(res) and back.kind == res.kind
    for key, frame in _tables(res).items():
        pd.testing.assert_frame_equal(_tables(back)[key], frame, check_dtype=False)
    assert back.model.model is not None  # the PyMC model, rebuilt
    assert [v.name for v in back.model.model.free_RVs] == \
        [v.name for v in res.model.model.free_RVs]
    assert back.model.priors == res.model.priors
    assert back.model.options == res.model.options
    assert back.gate.passed == res.gate.passed
    assert back.to_dict()["gate"] == res.to_dict()["gate"]


def test_a_typed_loader_refuses_the_other_kind(e1_file, gstudy_file):
    with pytest.raises(ResultsFileError, match="holds a 'gstudy' analysis, not 'e1'"):
        E1Results.load(gstudy_file[1])
    assert isinstance(GStudyResults.load(gstudy_file[1]), GStudyResults)


def _tamper(path, out):
    """Copy the file with one input score changed and everything else (hash included) kept."""
    tree = xr.open_datatree(path, engine="netcdf4").load()
    res = misalign.load(path)
    group = res.model_class.data_group
    ds = tree[group].to_dataset()
    ds["score"] = ds["score"].copy(data=np.r_[ds["score"].values[:1] + 1.0,
                                              ds["score"].values[1:]])
    groups = {n.path: n.to_dataset(inherit=False) for n in tree.subtree}
    groups[f"/{group}"] = ds
    new = xr.DataTree.from_dict(groups)
    new.attrs = dict(tree.attrs)
    new.to_netcdf(out, engine="netcdf4")
    return out


def test_altered_data_are_refused_with_a_plain_message(fitted, tmp_path):
    res, path = fitted
    bad = _tamper(path, tmp_path / "tampered.nc")
    with pytest.raises(ResultsFileError, match="do not match its data hash"):
        misalign.load(bad)
    r = cli("summary", str(bad))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "do not match its data hash" in r.stderr


def test_not_a_results_file(tmp_path):
    text = tmp_path / "notes.nc"
    text.write_text("hello")
    with pytest.raises(ResultsFileError, match="not a misalign results file"):
        misalign.load(text)
    plain = tmp_path / "plain.nc"
    xr.Dataset({"x": ("i", [1.0])}).to_netcdf(plain, engine="netcdf4")
    r = cli("summary", str(plain))
    assert r.returncode == 2 and "no 'misalign_model' attribute" in r.stderr
    assert "Traceback" not in r.stderr


def test_summary_shows_a_gstudy_file(gstudy_file):
    res, path = gstudy_file
    r = cli("summary", str(path), env={"COLUMNS": "160"})
    assert r.returncode == 0, r.stderr
    assert "G-study: variance components" in r.stdout and "Decision study" in r.stdout
    assert "diagnostics gate" in r.stderr
    # The smallest design says which grid it searched; r > 1 values are marked upper bounds.
    assert "searched up to 30 × 8 × 12" in r.stdout and "upper bound (r > 1)" in r.stdout
    j = cli("summary", str(path), "--json")
    assert j.returncode == 0, j.stderr
    payload = json.loads(j.stdout)
    assert payload["kind"] == "gstudy" and "passed" in payload["gate"]
    comps = pd.DataFrame(payload["components"])
    ours = res.table
    np.testing.assert_allclose(comps["super_mean"], ours["super_mean"], rtol=1e-12)
    assert {"decision_study", "smallest_design"} <= set(payload)


def test_facet_notes_only_when_that_facet_is_fitted(gstudy_file):
    res, _ = gstudy_file
    res.model.ratings.facet_notes = {"school": ["3 teachers have no school id"]}
    try:
        assert not any("school id" in n for n in res.notes)  # fitted without --facets
    finally:
        res.model.ratings.facet_notes = {}


def test_sensitivity_and_prior_check_on_a_gstudy_file(gstudy_file, tmp_path):
    _, path = gstudy_file
    r = cli("sensitivity", str(path), "--sets", "default,narrow", "--draws", "100", "--tune",
            "100", "--chains", "2", "--out", str(tmp_path / "sens"), env={"COLUMNS": "160"})
    assert r.returncode == 0, r.stderr
    assert "power-scaling sensitivity" in r.stdout and "A/teacher" in r.stdout
    sweep = pd.read_csv(tmp_path / "sens" / "sweep.csv")
    assert set(sweep["prior_set"]) == {"default", "narrow"}
    assert {"A/teacher", "B/residual"} <= set(sweep["quantity"])
    assert (tmp_path / "sens" / "sweep.png").stat().st_size > 0
    p = cli("prior-check", str(path), "--out", str(tmp_path / "pc.png"), env={"COLUMNS": "160"})
    assert p.returncode == 0, p.stderr
    assert "share:teacher" in p.stdout and (tmp_path / "pc.png").stat().st_size > 0


def test_with_priors_keeps_data_and_options(gstudy_file):
    from pymc_extras.prior import Prior

    res, _ = gstudy_file
    other = res.model.with_priors({"sigma_rater": {"distribution": "HalfNormal", "sigma": 0.3}})
    assert type(other) is type(res.model) and other.data is res.model.data
    assert other.options == res.model.options
    assert other.priors["sigma_rater"] == Prior("HalfNormal", sigma=0.3)
    assert other.priors["sigma_teacher"] == res.model.priors["sigma_teacher"]
    assert res.model.priors["sigma_rater"] != other.priors["sigma_rater"]  # not mutated


def test_each_model_resolves_its_own_target_accept(e1_file, gstudy_file):
    assert e1_file[0].model.fit_config["target_accept"] == 0.9
    assert gstudy_file[0].model.fit_config["target_accept"] == 0.8
    assert SamplerConfig(target_accept=0.9).resolved(0.8).target_accept == 0.9


def test_one_default_per_option_in_python_and_the_cli():
    from misalign import api
    from misalign.cli import fit
    from misalign.cli_gstudy import gstudy
    from misalign.cli_sensitivity import prior_check, sensitivity
    from misalign.inference.prior_check import prior_check as check

    assert check.__defaults__[-1] == DEFAULTS.seed  # prior-check's seed
    for command in (fit, gstudy, sensitivity, prior_check):
        params = inspect.signature(command).parameters
        for name in ("draws", "tune", "chains", "seed", "target_accept"):
            if name in params:
                assert params[name].default == getattr(DEFAULTS, name), (command, name)
    # The Python API takes its sampler defaults from the same object.
    assert "draws" not in inspect.signature(api.fit).parameters
    with pytest.raises(TypeError, match="unknown sampler option"):
        SamplerConfig.make(drawz=10)


def test_building_a_model_leaves_its_priors_and_coords_alone():
    from misalign.data.simulate_experts import simulate_experts
    from misalign.models import GStudyModel

    ratings, _ = simulate_experts(n_teachers=8, dimensions=("A", "B"), seed=1)
    m = GStudyModel(ratings, correlated=True)
    priors, coords = dict(m.priors), {k: list(v) for k, v in m.coords.items()}
    m.build_model()
    m.build_model()
    assert m.priors == priors and m.coords == coords
    assert "dimension_bis" in m.model.coords and not m.priors["sigma_teacher"].dims


def test_tables_print_whole_and_results_print_short(e1_file):
    res = e1_file[0]
    text = repr(res.table)
    for col in ("finite_mean", "finite_upper", "super_mean", "super_upper"):
        assert col in text
    assert "..." not in text
    assert repr(res).startswith("<E1Results (e1): ") and len(repr(res)) < 400


def test_notes_warn_once_at_the_callers_line():
    from misalign.data import MisalignmentData
    from tests.helpers import tiny_unbalanced_frame

    data = MisalignmentData.from_frame(tiny_unbalanced_frame(seed=1), "raw",
                                       {"T1": 1.0, "T2": 1.0, "T3": 1.0})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = misalign.fit(data, draws=20, tune=20, chains=1, progressbar=False)
    notes = [w for w in caught if issubclass(w.category, UserWarning)]
    assert [str(w.message) for w in notes] == res.notes and len(notes) >= 1
    assert all(w.filename == __file__ for w in notes), [w.filename for w in notes]
