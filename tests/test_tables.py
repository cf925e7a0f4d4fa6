"""The teacher (value-added) and LLM (benchmark) tables: read, counted, and refused with a
plain message naming file, row, line and column; carried into the measurement data and its
results file."""

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from misalign.data import ValidationError
from misalign.data.tables import read_llms, read_teachers


def _write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    return p


def _problems(call) -> list[str]:
    with pytest.raises(ValidationError) as exc:
        call()
    return [str(p) for p in exc.value.problems]


def test_teachers_without_value_added_are_counted_not_refused(tmp_path):
    p = _write(tmp_path, "teachers.csv", "teacher_id,value_added,va_se\n"
               "t1,0.5,0.2\nt2,,\nt3,-1.25,\nghost,0.1,\n")
    table = read_teachers(p, rated=["t1", "t2", "t3", "t4"])
    assert table.value_added == {"t1": 0.5, "t3": -1.25, "ghost": 0.1}
    assert np.isnan(table.frame["va_se"].iat[2]) and table.frame["va_se"].iat[0] == 0.2
    # t2 has an empty value, t4 has ratings but no row; ghost has a row but no ratings.
    assert table.counts() == {"teachers": 4, "with_value_added": 3, "without_value_added": 2,
                              "not_in_ratings": 1}
    notes = " ".join(table.notes())
    assert "2 teacher(s) without value-added" in notes and "ghost" in notes


def test_bad_teacher_rows_name_file_row_line_and_column(tmp_path):
    p = _write(tmp_path, "teachers.csv", "teacher_id,value_added,va_se\n"
               "t1,high,\nt2,0.3,-1\n,0.1,\nt1,0.2,\nt5,,0.4\n")
    got = _problems(lambda: read_teachers(p))
    assert f"{p}, row 1 (line 2), column 'value_added': 'high' is not a number" in got
    assert f"{p}, row 2 (line 3), column 'va_se': -1 must be above 0" in got
    assert any("row 3 (line 4), column 'teacher_id': empty teacher_id" in g for g in got)
    assert any("row 4 (line 5)" in g and "'t1' is listed twice (first on row 1)" in g
               for g in got)
    assert any("row 5 (line 6), column 'va_se': va_se given without a value_added" in g
               for g in got)


@pytest.mark.parametrize("text, expect", [
    ("teacher_id,value_add\nt1,0.2\n", "unknown column 'value_add': did you mean "
                                       "'value_added'?"),
    ("teacher,value_added\nt1,0.2\n", "unknown column 'teacher': did you mean 'teacher_id'?"),
    ("id,value_added\nt1,0.2\n", "required column 'teacher_id' is missing"),
    ("teacher_id,value_added\nt1,\nt2,\n", "no teacher has a value_added"),
])
def test_teacher_table_shape_problems(tmp_path, text, expect):
    p = _write(tmp_path, "teachers.csv", text)
    assert any(expect in g for g in _problems(lambda: read_teachers(p))), expect


def test_teacher_table_from_parquet(tmp_path):
    p = tmp_path / "teachers.parquet"
    pd.DataFrame({"teacher_id": [101, 102], "value_added": [0.25, np.nan]}).to_parquet(p)
    table = read_teachers(p)
    assert table.value_added == {"101": 0.25}


def test_llm_table_names_the_llm_whose_benchmark_is_missing(tmp_path):
    p = _write(tmp_path, "llms.csv", "rater,benchmark,family\n"
               "openai/gpt-4o,0.81,openai\nanthropic/claude-3-haiku,,anthropic\n"
               "openai/gpt-4o,0.8,openai\nmeta/llama,n/a,meta\n")
    got = _problems(lambda: read_llms(p, rated=["openai/gpt-4o", "google/gemini"]))
    assert (f"{p}, row 2 (line 3), column 'benchmark': benchmark missing for LLM "
            "'anthropic/claude-3-haiku'") in got
    assert any("row 3 (line 4)" in g and "listed twice" in g for g in got)
    assert f"{p}, row 4 (line 5), column 'benchmark': 'n/a' is not a number" in got
    assert any("LLM 'google/gemini' has ratings but no row here" in g for g in got)


def test_llm_table_counts_llms_without_ratings(tmp_path):
    p = _write(tmp_path, "llms.csv", "rater,benchmark\na,0.5\nb,0.7\nc,0.9\n")
    table = read_llms(p, rated=["a", "b"])
    assert table.benchmark == {"a": 0.5, "b": 0.7, "c": 0.9}
    assert table.unknown == ["c"] and "c" in table.notes()[0]


def test_the_tables_reach_the_measurement_data_and_its_file(small_study, tmp_path):
    from misalign.api import measurement_data
    from misalign.data.measurement import MeasurementData

    paths = small_study.write(tmp_path / "study", fmt="csv")
    teachers = small_study.teachers.copy()
    teachers.loc[:2, "value_added"] = np.nan  # three teachers without value-added
    teachers.to_csv(paths["teachers"], index=False)
    md = measurement_data(paths["ratings"], tasks=paths["tasks"], teachers=paths["teachers"],
                          llms=paths["llms"])
    n = len(teachers)
    assert md.summary()["teachers_with_value_added"] == n - 3
    assert md.summary()["llms_with_benchmark"] == small_study.llms.shape[0]
    assert md.benchmark == dict(zip(small_study.llms["rater"], small_study.llms["benchmark"],
                                    strict=True))
    assert any("3 teacher(s) without value-added" in s for s in md.notes)
    back = MeasurementData.from_dataset(md.to_dataset())
    assert back.benchmark == md.benchmark and back.notes == md.notes
    assert back.value_added == md.value_added


def test_measure_refuses_a_bad_side_table_before_fitting(small_study, tmp_path):
    paths = small_study.write(tmp_path / "study", fmt="csv")
    llms = small_study.llms.copy()
    llms.loc[1, "benchmark"] = np.nan
    llms.to_csv(paths["llms"], index=False)
    out = subprocess.run([sys.executable, "-m", "misalign.cli", "measure", str(paths["ratings"]),
                          "--tasks", str(paths["tasks"]), "--llms", str(paths["llms"]),
                          "--out", str(tmp_path / "m.nc")], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 2, out.stderr
    name = llms["rater"].iat[1]
    assert f"row 2 (line 3), column 'benchmark': benchmark missing for LLM '{name}'" in out.stderr
    assert not (tmp_path / "m.nc").exists()


def test_ensemble_weights_and_a_benchmark_tie():
    """Rows sum to 1; the best-on-benchmark LLM does not depend on the sources' order when two
    LLMs tie (clipped benchmarks tie)."""
    from misalign.data.ensembles import ensemble_weights

    llm = ["b", "b", "a", "a", "c", "c"]
    prompt = ["x", "y", "x", "y", "x", "y"]
    bench = {"a": 0.95, "b": 0.95, "c": 0.7}
    w = ensemble_weights(llm, prompt, bench)
    np.testing.assert_allclose(w.sum(axis=1), 1.0)
    assert "best on benchmark (a)" in w.index
    assert "best on benchmark (a)" in ensemble_weights(llm[::-1], prompt[::-1], bench).index
    assert set(w.index) == {"all sources", "all LLMs × x", "all LLMs × y", "benchmark-weighted",
                            "best on benchmark (a)"}
