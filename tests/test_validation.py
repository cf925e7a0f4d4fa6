"""Every validation error names file, row and column; nothing is dropped silently."""

import pandas as pd
import pytest

from misalign.data import ValidationError, build_misalignment, load_ratings
from tests.conftest import NCTE
from tests.helpers import ncte_long

GOOD = """unit_id,task,rater,rater_kind,prompt,score
u1,CLPC,expert_1,expert,,4
u1,CLPC,openai/gpt-4o,llm,base,5
u1,CLPC,openai/gpt-4o,llm,cot,6
u2,CLPC,expert_1,expert,,3
u2,CLPC,openai/gpt-4o,llm,base,3
u2,CLPC,openai/gpt-4o,llm,cot,2
u2,EXPL,expert_2,expert,,2
u2,EXPL,openai/gpt-4o,llm,base,3
"""


def write(tmp_path, text, name="ratings.csv"):
    p = tmp_path / name
    p.write_text(text)
    return p


def problems(path, **kw):
    with pytest.raises(ValidationError) as exc:
        load_ratings(path, **kw)
    return [str(p) for p in exc.value.problems]


def test_good_file_loads(tmp_path):
    table = load_ratings(write(tmp_path, GOOD))
    assert len(table.ratings) == 8 and table.dropped.empty
    assert set(table.tasks["task"]) == {"CLPC", "EXPL"}


def test_three_problems_in_one_file(tmp_path):
    """The acceptance case: a misspelled column, a 9 on a 1–7 task, a duplicated row."""
    bad = GOOD.replace("rater_kind", "rater_knd").replace("u2,CLPC,openai/gpt-4o,llm,base,3",
                                                          "u2,CLPC,openai/gpt-4o,llm,base,9")
    bad += "u1,CLPC,openai/gpt-4o,llm,base,5\n"
    msgs = problems(write(tmp_path, bad))
    assert len(msgs) == 3, msgs
    assert msgs[0] == ("ratings.csv, line 1, column 'rater_knd': unknown column 'rater_knd': "
                       "did you mean 'rater_kind'?").replace("ratings.csv", str(tmp_path /
                                                                                "ratings.csv"))
    assert "row 5 (line 6), column 'score': score 9 is outside the 1–7 scale of task 'CLPC'" \
        in msgs[1]
    assert "row 9 (line 10)" in msgs[2] and "duplicate rating" in msgs[2] and "as row 2" in msgs[2]


def test_missing_column(tmp_path):
    text = "\n".join(",".join(x for i, x in enumerate(line.split(",")) if i != 3)
                     for line in GOOD.strip().splitlines())
    msgs = problems(write(tmp_path, text))
    assert any("required column 'rater_kind' is missing" in m and "line 1" in m for m in msgs)


def test_non_numeric_and_missing_score(tmp_path):
    text = GOOD.replace("u1,CLPC,openai/gpt-4o,llm,cot,6", "u1,CLPC,openai/gpt-4o,llm,cot,six")
    text = text.replace("u2,CLPC,openai/gpt-4o,llm,cot,2", "u2,CLPC,openai/gpt-4o,llm,cot,")
    msgs = problems(write(tmp_path, text))
    assert any("row 3 (line 4), column 'score': score 'six' is not a number" in m for m in msgs)
    assert any("row 6 (line 7), column 'score': score is missing" in m for m in msgs)


def test_task_not_in_task_table(tmp_path):
    tasks = write(tmp_path, "task,scale_min,scale_max\nCLPC,1,7\n", "tasks.csv")
    msgs = problems(write(tmp_path, GOOD), tasks=tasks)
    assert any("row 7 (line 8), column 'task': task 'EXPL' is not in the task table" in m
               for m in msgs)


def test_unknown_task_without_table(tmp_path):
    msgs = problems(write(tmp_path, GOOD.replace("EXPL", "NEWITEM")))
    assert any("task 'NEWITEM' is not in the task table" in m and "pass a task table" in m
               for m in msgs)


def test_llm_without_expert_reference(tmp_path):
    text = GOOD + "u3,CLPC,openai/gpt-4o,llm,base,4\n"
    msgs = problems(write(tmp_path, text))
    assert any("row 9 (line 10), column 'unit_id': no expert rated unit 'u3' on task 'CLPC'" in m
               for m in msgs)


def test_bad_rater_kind_and_nesting(tmp_path):
    text = ("unit_id,task,rater,rater_kind,prompt,score,transcript_id\n"
            "u1,CLPC,e1,expert,,4,g1\nu1,CLBM,e1,expert,,4,g2\nu1,CLPC,m,robot,base,4,g1\n")
    msgs = problems(write(tmp_path, text))
    assert any("column 'rater_kind': rater_kind 'robot' must be one of expert, llm" in m
               for m in msgs)
    assert any("unit_id 'u1' belongs to more than one transcript_id: g1, g2" in m for m in msgs)


def test_drop_policy_reports_every_row(tmp_path):
    text = GOOD.replace("u1,CLPC,openai/gpt-4o,llm,cot,6", "u1,CLPC,openai/gpt-4o,llm,cot,12")
    text = text.replace("u2,EXPL,expert_2,expert,,2", "u2,EXPL,expert_2,expert,,x")
    table = load_ratings(write(tmp_path, text), score_policy="drop")
    assert len(table.ratings) == 5
    d = table.dropped
    assert list(d["row"]) == [3, 7, 8]
    assert "outside the 1–7 scale" in d["reason"].iloc[0]
    assert "not a number" in d["reason"].iloc[1]
    assert "every expert rating of this unit and task was dropped" in d["reason"].iloc[2]
    out = table.write_dropped(tmp_path / "dropped.csv")
    assert len(pd.read_csv(out)) == 3


def test_parquet_is_read(tmp_path):
    df = pd.read_csv(write(tmp_path, GOOD), dtype=str, keep_default_na=False)
    df["score"] = pd.to_numeric(df["score"])
    p = tmp_path / "r.parquet"
    df.to_parquet(p)
    assert len(load_ratings(p).ratings) == 8


def test_misalignment_scales(tmp_path):
    table = load_ratings(write(tmp_path, GOOD + "u3,EXPL,expert_2,expert,,1\n"))
    raw = build_misalignment(table, error_scale="raw")
    assert raw.frame["error"].tolist()[:2] == [1.0, 2.0]
    sd = build_misalignment(table)
    expert = table.ratings[(table.ratings.rater_kind == "expert") & (table.ratings.task == "CLPC")]
    assert sd.task_scale["CLPC"] == pytest.approx(expert["score"].std(ddof=1))
    assert sd.frame["error"].iloc[0] == pytest.approx(1.0 / sd.task_scale["CLPC"])


@pytest.mark.skipif(not NCTE.exists(), reason="shared NCTE data not present")
def test_real_ncte_expert_ratings(tmp_path):
    long = ncte_long(NCTE)
    p = tmp_path / "ncte_long.csv"
    long.to_csv(p, index=False)
    with pytest.raises(ValidationError) as exc:
        load_ratings(p)
    missing = [x for x in exc.value.problems if x.message == "score is missing"]
    assert len(missing) == (long["score"] == "").sum() > 0
    assert all(x.row is not None and x.column == "score" for x in missing)
    table = load_ratings(p, score_policy="drop")
    assert len(table.dropped) == len(missing)
    assert len(table.ratings) + len(table.dropped) == len(long)
    assert set(table.dropped["reason"]) == {"score is missing"}


def test_partial_families_are_refused(tmp_path):
    text = GOOD.replace("unit_id,task,rater,rater_kind,prompt,score",
                        "unit_id,task,rater,rater_kind,prompt,score,family")
    lines = text.strip().splitlines()
    lines = [lines[0]] + [x + ("," if "expert" in x else ",gpt") for x in lines[1:]]
    lines.append("u1,CLPC,meta/llama,llm,base,4,")
    msgs = problems(write(tmp_path, "\n".join(lines) + "\n"))
    assert any("row 9 (line 10), column 'family': family is empty here" in m for m in msgs)


def test_empty_non_utf8_and_bom_files_through_the_api(tmp_path):
    import misalign

    empty, latin, bom = tmp_path / "e.csv", tmp_path / "l.csv", tmp_path / "b.csv"
    empty.write_bytes(b"")
    latin.write_bytes(b"unit_id,task\nu\xe9,CLPC\n")
    with pytest.raises(ValidationError, match="the file is empty"):
        misalign.load_misalignment(empty)
    with pytest.raises(ValidationError, match=r"not UTF-8 text \(byte 0xe9"):
        misalign.load_misalignment(latin)
    # A byte-order mark (Excel's "CSV UTF-8") is fine, and the result feeds fit directly.
    from misalign.api import misalignment_data

    bom.write_bytes(b"\xef\xbb\xbf" + GOOD.encode())
    data = misalign.load_misalignment(bom, error_scale="raw")
    assert isinstance(data, misalign.MisalignmentData) and data.n_ratings == 5
    assert misalignment_data(data) is data
