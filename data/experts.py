"""Expert ratings for the reliability (G-) study: one row per (segment, rater, dimension).

Two readers: the long ratings format (expert rows; ``unit_id`` is the segment, ``transcript_id``
the lesson, ``teacher_id`` the teacher, ``task`` the dimension; optional ``school_id`` and
``district_id``), and the wide NCTE CLASS file (one row per segment × rater, one column per
dimension). Missing scores are counted per dimension and reported, never silently dropped.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from .categorical import dataset_to_frame, frame_hash, frame_to_dataset
from .io import _read_table, read_csv, validate_ratings
from .schema import Problem, ValidationError

NCTE_DIMENSIONS = ("CLPC", "CLNC", "CLTS", "CLRSP", "CLBM", "CLPRDT", "CLILF", "CLCU", "CLAPS",
                   "CLQF", "CLINSTD", "CLSTENG")
NCTE_IDS = {"NCTETID": "teacher", "OBSID": "lesson", "CHAPNUM": "segment_no",
            "RATERID": "rater", "SCHOOLID": "school", "DISTRICT": "district"}
COLUMNS = ("segment", "lesson", "teacher", "school", "district", "rater", "dimension", "score")
FORMATS = ("long", "ncte-class")


@dataclass
class ExpertRatings:
    """Long expert ratings plus what was missing. ``school``/``district`` are "" when absent."""

    frame: pd.DataFrame
    source: str
    missing: dict[str, int] = field(default_factory=dict)  # dimension -> missing scores
    notes: list[str] = field(default_factory=list)
    scale: dict[str, tuple[float, float]] = field(default_factory=dict)
    facet_notes: dict[str, list[str]] = field(default_factory=dict)  # only when it is fitted

    @property
    def dimensions(self) -> list[str]:
        return list(dict.fromkeys(self.frame["dimension"]))

    def subset(self, dimensions: list[str]) -> ExpertRatings:
        unknown = [d for d in dimensions if d not in self.dimensions]
        if unknown:
            raise ValidationError([Problem(file=self.source, message=(
                f"unknown dimension(s) {', '.join(unknown)} (known: "
                f"{', '.join(self.dimensions)})"))])
        keep = self.frame["dimension"].isin(dimensions).to_numpy()
        order = {d: i for i, d in enumerate(dimensions)}  # the order the user asked for
        sub = self.frame.loc[keep]
        sub = sub.iloc[np.argsort(sub["dimension"].map(order).to_numpy(), kind="stable")]
        return ExpertRatings(sub.reset_index(drop=True), self.source,
                             {d: n for d, n in self.missing.items() if d in dimensions},
                             list(self.notes), {d: s for d, s in self.scale.items()
                                                if d in dimensions}, dict(self.facet_notes))

    def has(self, facet: str) -> bool:
        return bool((self.frame[facet] != "").any())

    def data_hash(self) -> str:
        return frame_hash(self.frame, list(COLUMNS))

    def summary(self) -> dict:
        f = self.frame
        out = {"ratings": len(f), "dimensions": len(self.dimensions)}
        for col in ("rater", "teacher", "lesson", "segment", "school", "district"):
            if (f[col] != "").any():
                out[col] = int(f[col].nunique())
        return out

    def to_dataset(self) -> xr.Dataset:
        """The ratings as stored in results files (codes + labels), with what was missing."""
        ds = frame_to_dataset(self.frame, list(COLUMNS[:-1]), ["score"])
        ds.attrs = {"source": self.source, "missing": json.dumps(self.missing),
                    "notes": json.dumps(self.notes),
                    "scale": json.dumps({d: list(v) for d, v in self.scale.items()}),
                    "facet_notes": json.dumps(self.facet_notes)}
        return ds

    @classmethod
    def from_dataset(cls, ds: xr.Dataset) -> ExpertRatings:
        frame = dataset_to_frame(ds, list(COLUMNS[:-1]), ["score"], categorical=False)
        a = ds.attrs
        return cls(frame, a["source"], json.loads(a.get("missing", "{}")),
                   json.loads(a.get("notes", "[]")),
                   {d: tuple(v) for d, v in json.loads(a.get("scale", "{}")).items()},
                   json.loads(a.get("facet_notes", "{}")))


def _ids(s: pd.Series) -> pd.Series:
    """Ids as text: 12.0 → "12", missing → ""."""
    def one(v: object) -> str:
        if v is None or (isinstance(v, float) and np.isnan(v)):
            return ""
        if isinstance(v, float) and v.is_integer():
            return str(int(v))
        return str(v).strip()
    return s.map(one).astype(object)


def read_ncte_class(path: str | Path) -> ExpertRatings:
    path = Path(path)
    label = str(path)
    if not path.is_file():
        raise ValidationError([Problem(file=label, message="file not found")])
    df = read_csv(path)
    missing_cols = [c for c in (*NCTE_IDS, *NCTE_DIMENSIONS[:1]) if c not in df.columns]
    if missing_cols:
        raise ValidationError([Problem(file=label, message=(
            f"not an NCTE CLASS file: missing column(s) {', '.join(missing_cols)}"))])
    dims = [d for d in NCTE_DIMENSIONS if d in df.columns]
    problems = []
    for d in dims:
        v = pd.to_numeric(df[d], errors="coerce")
        bad = v.isna() & df[d].notna()
        for i in np.flatnonzero(bad.to_numpy())[:20]:
            problems.append(Problem(file=label, row=int(i) + 1, line=int(i) + 2, column=d,
                                    message=f"score '{df[d].iat[i]}' is not a number"))
        out = v.notna() & ((v < 1) | (v > 7))
        for i in np.flatnonzero(out.to_numpy())[:20]:
            problems.append(Problem(file=label, row=int(i) + 1, line=int(i) + 2, column=d,
                                    message=f"score {v.iat[i]:g} is outside the 1–7 scale"))
    for c in ("NCTETID", "OBSID", "RATERID", "CHAPNUM"):
        for i in np.flatnonzero(df[c].isna().to_numpy())[:20]:
            problems.append(Problem(file=label, row=int(i) + 1, line=int(i) + 2, column=c,
                                    message=f"{c} is missing"))
    if problems:
        raise ValidationError(problems)
    ids = {new: _ids(df[old]) for old, new in NCTE_IDS.items()}
    school_notes = []
    no_school = ids["school"] == ""
    if no_school.any():
        teachers = sorted(set(ids["teacher"][no_school]))
        school_notes.append(f"{int(no_school.sum())} row(s) of {len(teachers)} teacher(s) have no "
                     f"SCHOOLID ({', '.join(teachers[:5])}); with the school facet each is "
                     "its own school")
        ids["school"] = ids["school"].where(~no_school, "no-school-" + ids["teacher"])
    segment = ids["lesson"] + "-" + ids["segment_no"]
    long = []
    missing = {}
    for d in dims:
        v = pd.to_numeric(df[d], errors="coerce")
        ok = v.notna().to_numpy()
        missing[d] = int((~ok).sum())
        long.append(pd.DataFrame({"segment": segment[ok], "lesson": ids["lesson"][ok],
                                  "teacher": ids["teacher"][ok], "school": ids["school"][ok],
                                  "district": ids["district"][ok], "rater": ids["rater"][ok],
                                  "dimension": d, "score": v[ok].astype(float)}))
    frame = pd.concat(long, ignore_index=True)[list(COLUMNS)]
    _check_nesting(frame, label)
    return ExpertRatings(frame, label, missing, [], {d: (1.0, 7.0) for d in dims},
                         {"school": school_notes} if school_notes else {})


def read_expert_long(path: str | Path, tasks: str | Path | None = None) -> ExpertRatings:
    """Expert rows of the long ratings format, validated by the E1 loader. Ratings without a
    usable score are left out and counted per dimension. The long format has no school or
    district, so those facets are unavailable."""
    path = Path(path)
    raw, text = _read_table(path)
    if "rater_kind" in raw.columns:
        raw = raw[raw["rater_kind"].astype(str).str.strip() == "expert"].reset_index(drop=True)
    table = validate_ratings(raw, tasks=tasks, score_policy="drop", file=str(path), text=text)
    r = table.ratings
    frame = pd.DataFrame({
        "segment": r["unit_id"].astype(str).to_numpy(),
        "lesson": r["transcript_id"].astype(str).to_numpy(),
        "teacher": r["teacher_id"].astype(str).to_numpy(),
        "school": "", "district": "", "rater": r["rater"].astype(str).to_numpy(),
        "dimension": r["task"].astype(str).to_numpy(), "score": r["score"].to_numpy(float)})
    # Without a lesson or teacher id, each segment is its own lesson and teacher.
    frame.loc[frame["lesson"] == "", "lesson"] = "lesson-of-" + frame["segment"]
    frame.loc[frame["teacher"] == "", "teacher"] = "teacher-of-" + frame["lesson"]
    _check_nesting(frame, str(path))
    missing = {d: 0 for d in dict.fromkeys(frame["dimension"])}
    notes = []
    if len(table.dropped):
        rows = table.dropped["row"].to_numpy() - 1
        for d, n in pd.Series(raw["task"].astype(str).to_numpy()[rows]).value_counts().items():
            missing[d] = missing.get(d, 0) + int(n)
        notes.append(f"{len(table.dropped)} expert rating(s) without a usable score were left "
                     "out: " + "; ".join(sorted(set(table.dropped["reason"]))))
    scale = {t: (float(a), float(b)) for t, a, b in
             table.tasks[["task", "scale_min", "scale_max"]].itertuples(index=False)}
    return ExpertRatings(frame[list(COLUMNS)], str(path), missing, notes,
                         {d: s for d, s in scale.items() if d in missing})


def _check_nesting(frame: pd.DataFrame, label: str) -> None:
    problems = []
    for child, parent in (("segment", "lesson"), ("lesson", "teacher"), ("teacher", "school"),
                          ("school", "district")):
        sub = frame[frame[parent] != ""]
        n = sub.groupby(child)[parent].nunique()
        for name in n.index[n > 1][:10]:
            problems.append(Problem(file=label, column=parent, message=(
                f"{child} '{name}' belongs to more than one {parent}: the G-study needs "
                f"{child}s nested in {parent}s")))
    if problems:
        raise ValidationError(problems)


def load_experts(path: str | Path, fmt: str = "long", tasks: str | Path | None = None
                 ) -> ExpertRatings:
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, not {fmt!r}")
    return read_ncte_class(path) if fmt == "ncte-class" else read_expert_long(path, tasks)
