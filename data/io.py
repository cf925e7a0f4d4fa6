"""Read and validate the long ratings table and the task table (CSV or Parquet).

Every check runs in one pass and every problem is collected, so a user sees all of them at once.
Problems name the file, the 1-based data row (and the line, for text files) and the column.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .categorical import clean_text, replace_label
from .schema import (
    OPTIONAL_RATING_COLUMNS,
    RATER_KINDS,
    RATING_COLUMNS,
    RATING_KEY,
    REFERENCE_TASKS,
    REQUIRED_RATING_COLUMNS,
    SCORE_POLICIES,
    TASK_COLUMNS,
    Problem,
    ValidationError,
)

DROP_COLUMNS = ["file", "row", "column", "value", "reason"]


@dataclass
class RatingsTable:
    """Validated ratings plus their task table and the rows dropped on the way (with reasons)."""

    ratings: pd.DataFrame
    tasks: pd.DataFrame
    dropped: pd.DataFrame
    source: str

    def write_dropped(self, path: str | Path) -> Path:
        return write_dropped(self.dropped, path)


def write_dropped(dropped: pd.DataFrame, path: str | Path) -> Path:
    """Every dropped row with its file, row, column, value and reason, as CSV (atomic)."""
    from .atomic import atomic_write_text

    return atomic_write_text(path, dropped.to_csv(index=False))


def read_csv(path: Path, **options) -> pd.DataFrame:
    """``pd.read_csv`` as UTF-8 (a byte-order mark is fine), with a plain ``ValidationError``
    naming the file for an empty file, bytes that are not UTF-8, or text that is not CSV."""
    file = str(path)
    try:
        return pd.read_csv(path, encoding="utf-8-sig", **options)
    except pd.errors.EmptyDataError:
        raise ValidationError([Problem(file, "the file is empty (expected a header line and "
                                             "one row per rating)")]) from None
    except UnicodeDecodeError as exc:
        raise ValidationError([Problem(file, (
            f"not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at byte offset {exc.start}): "
            "save it as UTF-8, e.g. from a spreadsheet with 'CSV UTF-8'"))]) from None
    except pd.errors.ParserError as exc:
        raise ValidationError([Problem(file, f"not a readable CSV file: {exc}")]) from None


def _read_table(path: Path) -> tuple[pd.DataFrame, bool]:
    """Return the table (text columns as Categoricals, missing = "") and whether it is text."""
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.parquet as pq

        try:
            table = pq.read_table(path)
        except (pa.ArrowException, OSError) as exc:
            raise ValidationError([Problem(str(path), f"not a readable Parquet file: {exc}")]
                                  ) from None
        out = {}
        for name, col in zip(table.column_names, table.columns, strict=True):
            if pa.types.is_floating(col.type) and name not in ("score", "scale_min",
                                                                "scale_max"):
                # Integer ids stored as float because of missing values: 12.0 -> "12".
                s = col.to_pandas()
                out[name] = clean_text(s.map(lambda v: "" if pd.isna(v) else (
                    str(int(v)) if float(v).is_integer() else str(v))))
            elif name in ("score", "scale_min", "scale_max") and (
                    pa.types.is_floating(col.type) or pa.types.is_integer(col.type)):
                out[name] = col.to_pandas().astype(float)
            else:
                if not pa.types.is_dictionary(col.type):
                    col = pc.dictionary_encode(col.cast(pa.string()) if not (
                        pa.types.is_string(col.type) or pa.types.is_large_string(col.type))
                        else col)
                out[name] = clean_text(col.to_pandas())
        return pd.DataFrame(out).reset_index(drop=True), False
    if suffix in (".csv", ".txt", ".tsv"):
        sep = "\t" if suffix == ".tsv" else ","
        df = read_csv(path, dtype="category", keep_default_na=False, sep=sep)
        df.columns = [str(c).strip() for c in df.columns]
        return df, True
    raise ValidationError([Problem(str(path),
                                   f"unsupported file type '{suffix}' (use .csv or .parquet)")])


def _locate(file: str, text: bool, idx: int) -> dict:
    return {"file": file, "row": idx + 1, "line": idx + 2 if text else None}


def _check_columns(df: pd.DataFrame, file: str, known: tuple[str, ...], required: tuple[str, ...],
                   text: bool) -> list[Problem]:
    problems = []
    present = set(df.columns)
    line = 1 if text else None
    for col in df.columns:
        if col in known:
            continue
        close = difflib.get_close_matches(col, known, n=1, cutoff=0.75)
        if close and close[0] not in present:
            problems.append(Problem(file, f"unknown column '{col}': did you mean '{close[0]}'?",
                                    column=col, line=line))
    for col in required:
        if col not in present:
            near = difflib.get_close_matches(col, list(present), n=1, cutoff=0.75)
            if near and near[0] not in known:
                continue  # already reported above as a misspelling
            problems.append(Problem(file, f"required column '{col}' is missing "
                                    f"(columns found: {', '.join(df.columns)})", column=col,
                                    line=line))
    return problems


def open_table(path: str | Path, known: tuple[str, ...], required: tuple[str, ...]
               ) -> tuple[pd.DataFrame, str, bool]:
    """A small side table (tasks, teachers, LLMs): (the table, its file name, whether it is
    text), or a ``ValidationError`` for a missing file or missing/misspelt columns."""
    path = Path(path)
    file = str(path)
    if not path.exists():
        raise ValidationError([Problem(file, "file not found")])
    df, text = _read_table(path)
    problems = _check_columns(df, file, known, required, text)
    if problems:
        raise ValidationError(problems)
    return df, file, text


def read_tasks(path: str | Path | None, used_tasks: list[str] | None = None) -> pd.DataFrame:
    """The task table; without a file, the reference study's seven tasks."""
    if path is None:
        rows = [(t, lo, hi) for t, (lo, hi) in REFERENCE_TASKS.items()
                if used_tasks is None or t in used_tasks]
        return pd.DataFrame(rows, columns=list(TASK_COLUMNS)).astype(
            {"scale_min": float, "scale_max": float})
    df, file, text = open_table(path, TASK_COLUMNS, TASK_COLUMNS)
    problems: list[Problem] = []
    out = df[list(TASK_COLUMNS)].copy()
    out["task"] = clean_text(out["task"]).astype(str)
    for col in ("scale_min", "scale_max"):
        if isinstance(out[col].dtype, pd.CategoricalDtype):
            out[col] = out[col].astype(str)
    for col in ("scale_min", "scale_max"):
        num = pd.to_numeric(out[col], errors="coerce")
        for i in np.flatnonzero(num.isna().to_numpy()):
            problems.append(Problem(message=f"'{out[col].iat[i]}' is not a number", column=col,
                                    **_locate(file, text, i)))
        out[col] = num
    bad = np.flatnonzero((out["scale_min"] >= out["scale_max"]).to_numpy())
    for i in bad:
        problems.append(Problem(message="scale_min must be below scale_max", column="scale_min",
                                **_locate(file, text, i)))
    dup = out["task"].duplicated(keep="first").to_numpy()
    for i in np.flatnonzero(dup):
        problems.append(Problem(message=f"task '{out['task'].iat[i]}' is listed twice",
                                column="task", **_locate(file, text, i)))
    if problems:
        raise ValidationError(problems)
    return out.reset_index(drop=True)


def load_ratings(path: str | Path, tasks: str | Path | pd.DataFrame | None = None,
                 score_policy: str = "error", require_reference: bool = True) -> RatingsTable:
    """Read and validate a ratings file; raise ValidationError listing every problem.

    ``score_policy='drop'`` drops rows with a missing, unparseable or out-of-scale score (and LLM
    rows whose every expert reference was dropped) instead of failing; each dropped row is listed
    in ``RatingsTable.dropped`` with its reason. ``require_reference=False`` accepts LLM ratings
    of a unit × task no expert rated (the joint measurement model uses them; E1 cannot).
    """
    if score_policy not in SCORE_POLICIES:
        raise ValueError(f"score_policy must be one of {SCORE_POLICIES}, not {score_policy!r}")
    path = Path(path)
    file = str(path)
    if not path.exists():
        raise ValidationError([Problem(file, "file not found")])
    df, text = _read_table(path)
    return validate_ratings(df, tasks=tasks, score_policy=score_policy, file=file, text=text,
                            require_reference=require_reference)


def validate_ratings(df: pd.DataFrame, tasks: str | Path | pd.DataFrame | None = None,
                     score_policy: str = "error", file: str = "<ratings>",
                     text: bool = False, require_reference: bool = True) -> RatingsTable:
    """Validate a ratings table already in memory (all cells as strings or numbers)."""
    df = df.copy()
    df.columns = [str(c) for c in df.columns]
    for col in df.columns:
        if col != "score":
            df[col] = clean_text(df[col])
    problems = _check_columns(df, file, RATING_COLUMNS, REQUIRED_RATING_COLUMNS, text)
    # Keep checking a misspelled column under the name it was meant to have, so one run
    # reports every problem (the misspelling itself is already among them).
    for col in list(df.columns):
        close = difflib.get_close_matches(col, RATING_COLUMNS, n=1, cutoff=0.75)
        if col not in RATING_COLUMNS and close and close[0] not in df.columns:
            df = df.rename(columns={col: close[0]})
    has = set(df.columns)
    for col in OPTIONAL_RATING_COLUMNS:
        if col not in has:
            df[col] = pd.Categorical.from_codes(np.zeros(len(df), dtype=np.int8),
                                                categories=["1" if col == "replicate" else ""])
    if "replicate" in has:
        df["replicate"] = replace_label(df["replicate"], "", "1")

    if isinstance(tasks, pd.DataFrame):
        task_table = tasks.copy()
    else:
        used = sorted(df["task"].unique()) if "task" in has else None
        try:
            task_table = read_tasks(tasks, used)
        except ValidationError as err:
            raise ValidationError(problems + err.problems) from None
    scale = task_table.set_index("task")[["scale_min", "scale_max"]]

    drops: list[tuple[int, str, str, str]] = []  # (index, column, value, reason)

    def loc(i: int) -> dict:
        return _locate(file, text, int(i))

    if "rater_kind" in has:
        bad = ~df["rater_kind"].isin(RATER_KINDS)
        for i in np.flatnonzero(bad.to_numpy()):
            problems.append(Problem(message=f"rater_kind '{df['rater_kind'].iat[i]}' must be one "
                                    f"of {', '.join(RATER_KINDS)}", column="rater_kind", **loc(i)))
        if "prompt" in has:
            miss = (df["rater_kind"] == "llm") & (df["prompt"] == "")
            for i in np.flatnonzero(miss.to_numpy()):
                problems.append(Problem(message="an LLM rating needs its prompting strategy",
                                        column="prompt", **loc(i)))
            extra = (df["rater_kind"] == "expert") & (df["prompt"] != "")
            for i in np.flatnonzero(extra.to_numpy()):
                problems.append(Problem(message="an expert rating has no prompt: leave it empty",
                                        column="prompt", **loc(i)))
    for col in ("unit_id", "task", "rater"):
        if col in has:
            for i in np.flatnonzero((df[col] == "").to_numpy()):
                problems.append(Problem(message=f"{col} is empty", column=col, **loc(i)))

    if "task" in has:
        unknown = ~df["task"].isin(scale.index) & (df["task"] != "")
        for i in np.flatnonzero(unknown.to_numpy()):
            problems.append(Problem(message=f"task '{df['task'].iat[i]}' is not in the task "
                                    f"table (known: {', '.join(scale.index)}); pass a task table "
                                    "with its scale", column="task", **loc(i)))

    if "score" in has:
        num, missing, as_text = _parse_scores(df["score"])
        unparsed = np.isnan(num) & ~missing
        df["score"] = num
        bad_rows: list[tuple[int, str]] = []
        for i in np.flatnonzero(missing):
            bad_rows.append((i, "score is missing"))
        for i in np.flatnonzero(unparsed):
            bad_rows.append((i, f"score '{as_text(i)}' is not a number"))
        if "task" in has:
            lo = _map_float(df["task"], scale["scale_min"])
            hi = _map_float(df["task"], scale["scale_max"])
            sc = df["score"].to_numpy()
            out = np.isfinite(sc) & np.isfinite(lo) & ((sc < lo) | (sc > hi))
            for i in np.flatnonzero(out):
                bad_rows.append((i, f"score {as_text(i)} is outside the "
                                    f"{lo[i]:g}–{hi[i]:g} scale of task '{df['task'].iat[i]}'"))
        bad_rows.sort()
        if score_policy == "error":
            problems.extend(Problem(message=m, column="score", **loc(i)) for i, m in bad_rows)
        else:
            drops.extend((i, "score", str(as_text(i)), m) for i, m in bad_rows)

    key_cols = [c for c in RATING_KEY if c in df.columns]
    if all(c in has for c in RATING_KEY if c != "replicate"):
        dup = df.duplicated(subset=key_cols, keep=False).to_numpy()
        if dup.any():
            first = df[dup].groupby(key_cols, sort=False).head(1)
            first_of = {tuple(r): i for i, r in
                        zip(first.index, first[key_cols].to_numpy(), strict=True)}
            for i in np.flatnonzero(dup):
                k = tuple(df[key_cols].iloc[i])
                j = first_of[k]
                if j != i:
                    problems.append(Problem(
                        message=f"duplicate rating: the same {', '.join(key_cols)} as row {j + 1}",
                        column=",".join(key_cols), **loc(i)))

    for child, parent in (("unit_id", "transcript_id"), ("transcript_id", "teacher_id"),
                          ("rater", "family")):
        if child in has and parent in has:
            sub = df[df[parent] != ""] if parent == "family" else df
            if parent == "family" and "rater_kind" in has:
                sub = sub[sub["rater_kind"] == "llm"]
            n = sub.groupby(child)[parent].nunique()
            for name in n.index[n > 1]:
                i = int(np.flatnonzero((df[child] == name).to_numpy())[0])
                vals = sorted(sub.loc[sub[child] == name, parent].unique())
                problems.append(Problem(message=f"{child} '{name}' belongs to more than one "
                                        f"{parent}: {', '.join(vals)}", column=parent, **loc(i)))

    if {"family", "rater_kind"} <= has:
        llm_rows = (df["rater_kind"] == "llm").to_numpy()
        given = (df["family"] != "").to_numpy()
        if (llm_rows & given).any() and (llm_rows & ~given).any():
            i = int(np.flatnonzero(llm_rows & ~given)[0])
            n = int((llm_rows & ~given).sum())
            problems.append(Problem(message=f"family is empty here and in {n - 1} other LLM "
                                    "row(s) while other LLMs have one: give every LLM its "
                                    "family or none", column="family", **loc(i)))

    if problems:
        raise ValidationError(problems)

    keep = np.ones(len(df), dtype=bool)
    for i, *_ in drops:
        keep[i] = False
    # An LLM rating is only measurable against an expert reference for the same unit and task.
    n_task = len(df["task"].cat.categories)
    cell = (np.asarray(df["unit_id"].cat.codes, dtype=np.int64) * n_task
            + np.asarray(df["task"].cat.codes, dtype=np.int64))
    is_llm = (df["rater_kind"] == "llm").to_numpy()
    in_any = np.isin(cell, cell[~is_llm]) | (not require_reference)
    in_kept = np.isin(cell, cell[~is_llm & keep]) | (not require_reference)
    for i in np.flatnonzero(is_llm & keep & ~in_any):
        problems.append(Problem(message=f"no expert rated unit '{df['unit_id'].iat[i]}' on task "
                                f"'{df['task'].iat[i]}', so this LLM rating has no reference",
                                column="unit_id", **loc(i)))
    for i in np.flatnonzero(is_llm & keep & in_any & ~in_kept):
        drops.append((i, "score", str(df["score"].iat[i]),
                      "every expert rating of this unit and task was dropped"))
        keep[i] = False
    if problems:
        raise ValidationError(problems)

    dropped = pd.DataFrame(
        [(file, i + 1, col, val, why) for i, col, val, why in sorted(drops)], columns=DROP_COLUMNS)
    ratings = df.loc[keep, list(RATING_COLUMNS)].reset_index(drop=True) if not keep.all() \
        else df[list(RATING_COLUMNS)]
    return RatingsTable(ratings=ratings, tasks=task_table, dropped=dropped, source=file)


def _parse_scores(s: pd.Series) -> tuple[np.ndarray, np.ndarray, Callable[[int], str]]:
    """Scores as floats (NaN where missing or not a number), which are missing, and the raw
    text of one row (for messages)."""
    if pd.api.types.is_numeric_dtype(s.dtype) and not isinstance(s.dtype, pd.CategoricalDtype):
        num = s.to_numpy(dtype=float)
        return num, np.isnan(num), lambda i: "" if np.isnan(num[i]) else f"{num[i]:g}"
    text = clean_text(s)
    labels = np.asarray(text.cat.categories, dtype=object)
    values = pd.to_numeric(pd.Series(labels.astype(str)), errors="coerce").to_numpy(dtype=float)
    codes = np.asarray(text.cat.codes, dtype=np.int64)
    return values[codes], (labels == "")[codes], lambda i: str(labels[codes[i]])


def _map_float(s: pd.Series, mapping: pd.Series) -> np.ndarray:
    """Per-row lookup through the labels (NaN for labels the mapping lacks)."""
    cats = pd.Index(s.cat.categories)
    per_label = mapping.reindex(cats).to_numpy(dtype=float)
    codes = np.asarray(s.cat.codes, dtype=np.int64)
    return np.where(codes >= 0, per_label[np.maximum(codes, 0)], np.nan)
