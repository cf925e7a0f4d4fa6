"""The units to rate: CSV, Parquet or JSONL with ``unit_id``, ``text`` and optionally
``transcript_id`` and ``teacher_id``. Every problem names the file, row and column."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ..schema import Problem, ValidationError

UNIT_COLUMNS = ("unit_id", "text")
OPTIONAL_UNIT_COLUMNS = ("transcript_id", "teacher_id")


@dataclass
class Units:
    frame: pd.DataFrame  # unit_id, text, transcript_id, teacher_id (all str, "" when absent)
    source: str

    def __len__(self) -> int:
        return len(self.frame)

    def text_of(self) -> dict[str, str]:
        return dict(zip(self.frame["unit_id"], self.frame["text"], strict=True))

    def digests(self) -> list[str]:
        return [hashlib.sha256(t.encode()).hexdigest() for t in self.frame["text"]]


def _read(path: Path) -> tuple[pd.DataFrame, int]:
    """The table as strings, and how many lines precede the first data row (for messages)."""
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        return pd.read_parquet(path), 0
    if suffix in (".jsonl", ".ndjson"):
        rows, problems = [], []
        with path.open(encoding="utf-8") as fh:
            for n, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as exc:
                    problems.append(Problem(file=str(path), line=n, message=f"not JSON: {exc}"))
                    continue
                if not isinstance(obj, dict):
                    problems.append(Problem(file=str(path), line=n, message="not a JSON object"))
                    continue
                rows.append(obj)
        if problems:
            raise ValidationError(problems)
        return pd.DataFrame(rows), 0
    if suffix in (".csv", ".tsv", ".txt"):
        return pd.read_csv(path, dtype=str, keep_default_na=False,
                           sep="\t" if suffix == ".tsv" else ","), 1
    raise ValidationError([Problem(file=str(path), message=(
        f"unknown units format '{suffix}' (use .csv, .tsv, .parquet or .jsonl)"))])


def read_units(path: str | Path) -> Units:
    path = Path(path)
    label = str(path)
    if not path.is_file():
        raise ValidationError([Problem(file=label, message="units file not found")])
    df, header = _read(path)
    df.columns = [str(c).strip() for c in df.columns]
    missing = [c for c in UNIT_COLUMNS if c not in df.columns]
    if missing:
        raise ValidationError([Problem(file=label, message=(
            f"missing column(s) {', '.join(missing)}; found: {', '.join(df.columns) or 'none'}"))])
    out = pd.DataFrame({c: df[c].map(lambda v: "" if v is None or (isinstance(v, float) and
                                                                    v != v) else str(v))
                        for c in UNIT_COLUMNS + tuple(c for c in OPTIONAL_UNIT_COLUMNS
                                                      if c in df.columns)})
    out["unit_id"] = out["unit_id"].str.strip()
    for c in OPTIONAL_UNIT_COLUMNS:
        out[c] = out[c].str.strip() if c in out else ""
    problems = []

    def where(i: int) -> dict:
        return {"row": i + 1, "line": i + 1 + header if header else None}

    for i in (out["unit_id"] == "").to_numpy().nonzero()[0]:
        problems.append(Problem(file=label, column="unit_id", message="unit_id is empty",
                                **where(int(i))))
    for i in (out["text"].str.strip() == "").to_numpy().nonzero()[0]:
        problems.append(Problem(file=label, column="text", message="text is empty",
                                **where(int(i))))
    dup = out["unit_id"].duplicated(keep="first") & (out["unit_id"] != "")
    first = {u: i for i, u in reversed(list(enumerate(out["unit_id"])))}
    for i in dup.to_numpy().nonzero()[0]:
        u = out["unit_id"].iat[i]
        problems.append(Problem(file=label, column="unit_id", message=(
            f"duplicate unit_id '{u}' (first on row {first[u] + 1})"), **where(int(i))))
    for child, parent in (("unit_id", "transcript_id"), ("transcript_id", "teacher_id")):
        sub = out[(out[parent] != "") & (out[child] != "")]
        n = sub.groupby(child)[parent].nunique()
        for name in n.index[n > 1]:
            i = int((out[child] == name).to_numpy().nonzero()[0][0])
            problems.append(Problem(file=label, column=parent, message=(
                f"{child} '{name}' belongs to more than one {parent}"), **where(i)))
    if problems:
        raise ValidationError(problems)
    if not len(out):
        raise ValidationError([Problem(file=label, message="no units in the file")])
    return Units(out.reset_index(drop=True), label)
