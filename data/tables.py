"""The two side tables E3 and E4 read beside the ratings: teachers with their value-added, and
LLMs with their benchmark scores (CSV or Parquet).

Validated like the ratings: every problem in one pass, each naming the file, the row (and the
line of a text file) and the column. A teacher may lack value-added (counted, not an error); an
LLM that has ratings but no benchmark is an error naming the LLM, because a benchmark-weighted
ensemble cannot leave it out silently. Rows for teachers or LLMs the ratings never mention are
kept out of the analysis and counted.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .io import _locate, open_table
from .schema import Problem, ValidationError

TEACHER_COLUMNS = ("teacher_id", "value_added", "va_se")
LLM_COLUMNS = ("rater", "benchmark", "family")


@dataclass
class TeacherTable:
    """One row per teacher: ``teacher_id``, ``value_added`` (NaN where not observed) and
    ``va_se`` (NaN where not given)."""

    frame: pd.DataFrame
    source: str
    unknown: list[str] = field(default_factory=list)  # in the table, not in the ratings
    unlisted: list[str] = field(default_factory=list)  # in the ratings, not in the table

    @property
    def value_added(self) -> dict[str, float]:
        f = self.frame[self.frame["value_added"].notna()]
        return dict(zip(f["teacher_id"], f["value_added"].astype(float), strict=True))

    def counts(self) -> dict[str, int]:
        has = int(self.frame["value_added"].notna().sum())
        return {"teachers": len(self.frame), "with_value_added": has,
                "without_value_added": len(self.frame) - has + len(self.unlisted),
                "not_in_ratings": len(self.unknown)}

    def notes(self) -> list[str]:
        c, out = self.counts(), []
        if c["without_value_added"]:
            out.append(f"{c['without_value_added']} teacher(s) without value-added "
                       "(their ratings still count; they add nothing to E3)")
        if self.unknown:
            out.append(f"{len(self.unknown)} teacher(s) in {self.source} have no ratings and "
                       f"are not used: {_few(self.unknown)}")
        return out


@dataclass
class LLMTable:
    """One row per LLM: ``rater``, ``benchmark`` and ``family`` ("" where not given)."""

    frame: pd.DataFrame
    source: str
    unknown: list[str] = field(default_factory=list)  # in the table, not in the ratings

    @property
    def benchmark(self) -> dict[str, float]:
        return dict(zip(self.frame["rater"], self.frame["benchmark"].astype(float), strict=True))

    def notes(self) -> list[str]:
        if not self.unknown:
            return []
        return [f"{len(self.unknown)} LLM(s) in {self.source} have no ratings and are not "
                f"used: {_few(self.unknown)}"]


def _few(names: list[str], n: int = 5) -> str:
    return ", ".join(names[:n]) + (f" and {len(names) - n} more" if len(names) > n else "")


def _open(path: str | Path, columns: tuple[str, ...], required: tuple[str, ...]
          ) -> tuple[pd.DataFrame, str, bool]:
    df, file, text = open_table(path, columns, required)
    out = pd.DataFrame({c: df[c].astype(str).str.strip() if c in df else ""
                        for c in columns})
    return out, file, text


def _ids(df: pd.DataFrame, col: str, file: str, text: bool, what: str) -> list[Problem]:
    problems = []
    for i in np.flatnonzero((df[col] == "").to_numpy()):
        problems.append(Problem(message=f"empty {col}: every row names a {what}", column=col,
                                **_locate(file, text, i)))
    filled = df[col] != ""
    for i in np.flatnonzero((df[col].duplicated(keep="first") & filled).to_numpy()):
        problems.append(Problem(message=f"{what} '{df[col].iat[i]}' is listed twice (first on "
                                f"row {int(np.flatnonzero(df[col] == df[col].iat[i])[0]) + 1})",
                                column=col, **_locate(file, text, i)))
    return problems


def _numbers(df: pd.DataFrame, col: str, file: str, text: bool, *, positive: bool = False,
             why_empty: Callable[[int], str] | None = None) -> tuple[pd.Series, list[Problem]]:
    """The column as floats (NaN where empty), with a problem per bad cell, and per empty
    cell when ``why_empty`` (row index → message) says why it may not be."""
    raw = df[col].replace({"nan": "", "NaN": "", "NA": "", "<NA>": "", "None": ""})
    num = pd.to_numeric(raw, errors="coerce")
    problems = []
    for i in range(len(df)):
        v, x = raw.iat[i], num.iat[i]
        where = _locate(file, text, i)
        if v == "":
            if why_empty is not None:
                problems.append(Problem(message=why_empty(i), column=col, **where))
        elif pd.isna(x) or not np.isfinite(x):
            problems.append(Problem(message=f"'{v}' is not a number", column=col, **where))
        elif positive and x <= 0:
            problems.append(Problem(message=f"{v} must be above 0", column=col, **where))
    return num.where(raw != ""), problems


def read_teachers(path: str | Path, rated: Iterable[str] | None = None) -> TeacherTable:
    """The teacher table (``teacher_id, value_added[, va_se]``); ``rated``: the teacher ids
    the ratings use, to count those without a row and the rows without ratings."""
    df, file, text = _open(path, TEACHER_COLUMNS, ("teacher_id", "value_added"))
    problems = _ids(df, "teacher_id", file, text, "teacher")
    va, more = _numbers(df, "value_added", file, text)
    se, more2 = _numbers(df, "va_se", file, text, positive=True)
    problems += more + more2
    for i in np.flatnonzero((va.isna() & se.notna()).to_numpy()):
        problems.append(Problem(message="va_se given without a value_added", column="va_se",
                                **_locate(file, text, i)))
    if va.notna().sum() == 0 and not problems:
        problems.append(Problem(file, "no teacher has a value_added: E3 needs some",
                                column="value_added"))
    if problems:
        raise ValidationError(problems)
    frame = pd.DataFrame({"teacher_id": df["teacher_id"], "value_added": va.astype(float),
                          "va_se": se.astype(float)})
    out = TeacherTable(frame=frame, source=file)
    if rated is not None:
        rated = {str(t) for t in rated}
        listed = set(frame["teacher_id"])
        out.unknown = sorted(listed - rated)
        out.unlisted = sorted(rated - listed)
    return out


def read_llms(path: str | Path, rated: Iterable[str] | None = None) -> LLMTable:
    """The LLM table (``rater, benchmark[, family]``); ``rated``: the LLMs with ratings, each of
    which needs a row with a benchmark."""
    df, file, text = _open(path, LLM_COLUMNS, ("rater", "benchmark"))
    problems = _ids(df, "rater", file, text, "LLM")
    bench, more = _numbers(df, "benchmark", file, text, why_empty=lambda i: (
        f"benchmark missing for LLM '{df['rater'].iat[i]}'"))
    problems += more
    if rated is not None:
        rated = sorted({str(m) for m in rated})
        missing = [m for m in rated if m not in set(df["rater"])]
        for m in missing:
            problems.append(Problem(file, f"LLM '{m}' has ratings but no row here (its "
                                    "benchmark is needed for the benchmark-weighted ensembles)",
                                    column="rater"))
    if problems:
        raise ValidationError(problems)
    frame = pd.DataFrame({"rater": df["rater"], "benchmark": bench.astype(float),
                          "family": df["family"]})
    out = LLMTable(frame=frame, source=file)
    if rated is not None:
        out.unknown = sorted(set(frame["rater"]) - set(rated))
    return out
