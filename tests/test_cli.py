"""The command line end to end, in subprocesses, as a user runs it."""

import json
import os
import subprocess
import sys

import arviz as az
import pytest

from misalign.data.components import PARTITION

ENV = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True", "COLUMNS": "120"}


def run(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "misalign.cli", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, env=ENV, timeout=600)


@pytest.fixture(scope="module")
def sim_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("sim")
    r = run("simulate", "--preset", "small", "--out", d, "--format", "csv")
    assert r.returncode == 0, r.stderr
    return d


def test_simulate_writes_study_with_truth(sim_dir):
    for name in ("ratings.csv", "tasks.csv", "teachers.csv", "llms.csv", "truth.json"):
        assert (sim_dir / name).exists()
    truth = json.loads((sim_dir / "truth.json").read_text())
    agg = truth["error_scales"]["expert-sd"]["aggregates"]
    assert sum(agg[k] for k in PARTITION) == pytest.approx(1.0)


def test_fit_file_strict_json_then_summary(sim_dir, tmp_path):
    priors = tmp_path / "priors.toml"
    priors.write_text('[sigma_total]\ndistribution = "HalfNormal"\nsigma = 0.5\n')
    out = tmp_path / "res.nc"
    # 2 chains × 100 draws cannot reach ESS 400: the gate fails and --strict exits 3.
    r = run("fit", sim_dir / "ratings.csv", "--tasks", sim_dir / "tasks.csv", "--draws", 100,
            "--tune", 200, "--chains", 2, "--priors", priors, "--out", out, "--strict", "--json")
    assert r.returncode == 3, r.stderr
    assert "Traceback" not in r.stderr
    payload = json.loads(r.stdout)
    assert payload["gate"]["passed"] is False
    names = {row["name"] for row in payload["shares"]}
    assert {"llm", "unit:task", "attributable", "shared"} <= names
    tree = az.from_netcdf(out)
    assert json.loads(tree.attrs["priors"])["sigma_total"]["kwargs"] == {"sigma": 0.5}
    s = run("summary", out, "--json")
    assert s.returncode == 0, s.stderr
    again = json.loads(s.stdout)["shares"]
    assert [r["name"] for r in again] == [r["name"] for r in payload["shares"]]
    for a, b in zip(again, payload["shares"], strict=True):
        assert a["finite_mean"] == pytest.approx(b["finite_mean"], rel=1e-12)
        assert a["super_upper"] == pytest.approx(b["super_upper"], rel=1e-12)
    t = run("summary", out)
    assert "attributable" in t.stdout and "finite-pop share" in t.stdout
    # The title is a line of its own, never wrapped to the table's width.
    assert "E1 variance partition of misalignment error (expert-sd scale, gaussian " \
        "likelihood)\n" in t.stdout


def test_fit_without_data_uses_embedded_study(tmp_path):
    r = run("fit", "--draws", 100, "--tune", 100, "--chains", 2, "--no-progress",
            "--error-scale", "raw", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "no data given: fitting the simulated 'small' study" in r.stderr
    assert "shared" in r.stdout and "raw scale" in r.stdout
    assert (tmp_path / "results.nc").exists()


def test_bad_csv_three_plain_messages_exit_2(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("unit_id,task,rater,rater_knd,prompt,score\n"
                   "u1,CLPC,e1,expert,,4\n"
                   "u1,CLPC,m/x,llm,base,9\n"
                   "u1,CLPC,e1,expert,,4\n")
    r = run("fit", bad, "--out", tmp_path / "r.nc")
    assert r.returncode == 2
    assert "Traceback" not in r.stderr and r.stdout == ""
    lines = [x for x in r.stderr.splitlines() if x.startswith("  - ")]
    assert len(lines) == 3, r.stderr
    assert "line 1, column 'rater_knd': unknown column 'rater_knd': did you mean 'rater_kind'?" \
        in lines[0]
    assert "row 2 (line 3), column 'score': score 9 is outside the 1–7 scale" in lines[1]
    assert "row 3 (line 4)" in lines[2] and "duplicate rating" in lines[2]
    assert not (tmp_path / "r.nc").exists()


def test_bad_prior_name_exit_2(sim_dir, tmp_path):
    p = tmp_path / "p.toml"
    p.write_text('[sigma_totl]\ndistribution = "HalfNormal"\nsigma = 1\n')
    r = run("fit", sim_dir / "ratings.csv", "--priors", p, "--out", tmp_path / "r.nc")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "unknown prior 'sigma_totl'; did you mean 'sigma_total'?" in r.stderr
    # A σ of the independent structure under the default budget says what to do.
    p.write_text('[sigma_llm]\ndistribution = "HalfNormal"\nsigma = 1\n')
    r = run("fit", sim_dir / "ratings.csv", "--priors", p, "--out", tmp_path / "r.nc")
    assert r.returncode == 2 and "--prior-structure independent" in r.stderr


def test_summary_of_missing_file(tmp_path):
    r = run("summary", tmp_path / "nope.nc")
    assert r.returncode == 2 and "file not found" in r.stderr


def test_drop_policy_reports_and_task_subset(sim_dir, tmp_path):
    lines = (sim_dir / "ratings.csv").read_text().splitlines()
    header = lines[0].split(",")
    col = header.index("score")
    row = lines[5].split(",")
    row[col] = "x"  # data row 5 (line 6)
    lines[5] = ",".join(row)
    bad = tmp_path / "r.csv"
    bad.write_text("\n".join(lines) + "\n")
    r = run("fit", bad, "--out", tmp_path / "r.nc")
    assert r.returncode == 2 and "row 5 (line 6), column 'score': score 'x' is not a number" \
        in r.stderr
    assert not (tmp_path / "r.nc").exists()
    r = run("fit", bad, "--out", tmp_path / "r.nc", "--score-policy", "drop", "--task-subset",
            "CLPC,EXPL", "--draws", 100, "--tune", 100, "--chains", 2, "--json")
    assert r.returncode == 0, r.stderr
    # Row 5 is an expert rating: its unit×task loses its only reference, so the 12 LLM
    # ratings of that cell go too, each listed with that reason.
    assert "dropped 13 row(s) under --score-policy drop" in r.stderr
    report = (tmp_path / "r.dropped.csv").read_text().splitlines()
    assert len(report) == 14 and ",5,score,x,score 'x' is not a number" in report[1]
    assert all("every expert rating of this unit and task was dropped" in x for x in report[2:])
    payload = json.loads(r.stdout)
    assert payload["data"]["task"] == 2


def test_help_version_and_a_missing_file_at_once(tmp_path):
    h = run("fit", "--help")
    assert 'misalign[jax]' in h.stdout and "gaussian: nested effects" in h.stdout
    assert 'misalign[distributed]' in run("sensitivity", "--help").stdout
    assert "default: all six: default, wide" in " ".join(run("sensitivity", "--help").stdout
                                                          .split())
    v = run("--version")
    assert v.returncode == 0 and v.stdout.startswith("misalign ")
    # A missing file is reported before PyMC is even imported.
    r = subprocess.run([sys.executable, "-X", "importtime", "-m", "misalign.cli", "fit",
                        str(tmp_path / "missing.csv")], capture_output=True, text=True, env=ENV)
    assert r.returncode == 2 and "missing.csv: file not found" in r.stderr
    assert " pymc" not in r.stderr and "pytensor" not in r.stderr


def test_empty_and_non_utf8_files_are_plain_errors(tmp_path):
    empty, latin = tmp_path / "empty.csv", tmp_path / "latin.csv"
    empty.write_bytes(b"")
    latin.write_bytes("unit_id,task,rater,rater_kind,prompt,score\nu1,CLPC,Andr\xe9,expert,,4\n"
                      .encode("latin-1"))
    for path, words in ((empty, "the file is empty"), (latin, "not UTF-8 text")):
        r = run("fit", path, "--out", tmp_path / "r.nc")
        assert r.returncode == 2 and words in r.stderr and str(path) in r.stderr
        assert "Traceback" not in r.stderr


def test_one_llm_one_prompt_reports_what_is_not_estimable(sim_dir, tmp_path):
    """Not estimable never reads as zero: no attributable row, a plain note, exit 0."""
    import pandas as pd

    r = pd.read_csv(sim_dir / "ratings.csv")
    keep = (r["rater_kind"] != "llm") | ((r["rater"] == "openai/gpt-4o") & (r["prompt"] == "cot"))
    r[keep].to_csv(tmp_path / "one.csv", index=False)
    out = tmp_path / "one.nc"
    f = run("fit", tmp_path / "one.csv", "--tasks", sim_dir / "tasks.csv", "--out", out)
    assert f.returncode == 0, f.stderr
    assert "not estimable with one LLM" in f.stderr and "not estimable with one prompt" in f.stderr
    assert "the attributable aggregate is not estimable" in f.stderr
    assert "one rating per unit × task" in f.stderr
    assert "0.000 [0.000, 0.000]" not in f.stdout
    j = run("summary", out, "--json")
    names = {row["name"] for row in json.loads(j.stdout)["shares"]}
    assert not names & {"attributable", "llm", "prompt", "family", "unit:task"}, names
    assert {"shared", "task", "residual", "reference"} <= names
    rows = [line.split()[1] for line in run("summary", out).stdout.splitlines()
            if line.startswith("│ ")]
    assert "attributable" not in rows and "residual" in rows
