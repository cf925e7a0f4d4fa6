"""From validated ratings to the misalignment table the models consume.

Misalignment error of one LLM rating = LLM score − expert reference (mean of the expert ratings of
the same unit and task), divided by a per-task scale: the SD of the individual expert ratings of
that task (``expert-sd``, default) or 1 (``raw``, rubric points).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import xarray as xr

from .categorical import clean_text, dataset_to_frame, frame_hash, frame_to_dataset, sorted_codes
from .io import RatingsTable
from .schema import Problem, ValidationError

ERROR_SCALES = ("expert-sd", "raw")
FRAME_COLUMNS = ["unit_id", "transcript_id", "teacher_id", "task", "llm", "family", "prompt",
                 "replicate", "reference_raters", "score", "reference", "error"]
RATER_SEPARATOR = "|"  # between the experts whose mean is a cell's reference
NUMBER_COLUMNS = ["score", "reference", "error"]
TEXT_COLUMNS = [c for c in FRAME_COLUMNS if c not in NUMBER_COLUMNS]


@dataclass
class MisalignmentData:
    """One row per LLM rating with its error, as integer codes plus labels (memory-lean)."""

    frame: pd.DataFrame
    error_scale: str
    task_scale: dict[str, float]
    n_experts: int = 0
    n_expert_ratings: int = 0
    # Rows dropped under score_policy="drop", each with its reason (not part of the fitted data).
    dropped: pd.DataFrame | None = field(default=None, repr=False, compare=False)
    # Derived in __post_init__.
    error: np.ndarray = field(init=False, repr=False)
    llm: np.ndarray = field(init=False, repr=False)
    prompt: np.ndarray = field(init=False, repr=False)
    task: np.ndarray = field(init=False, repr=False)
    cell: np.ndarray = field(init=False, repr=False)
    labels: dict[str, list[str]] = field(init=False, repr=False)
    llm_family: np.ndarray | None = field(init=False, repr=False)
    parents: list[tuple[str, np.ndarray]] = field(init=False, repr=False)
    # (cells × experts): each cell's reference as weights on the experts (rows sum to 1), or
    # None when the raters of the references are not known.
    reference_weights: np.ndarray | None = field(init=False, repr=False)

    def __post_init__(self) -> None:
        f = self.frame
        self.error = f["error"].to_numpy(dtype=np.float64)
        self.labels = {}
        for dim, col in (("llm", "llm"), ("prompt", "prompt"), ("task", "task")):
            codes, labs = sorted_codes(f[col])
            setattr(self, dim, codes)
            self.labels[dim] = labs
        has_family = (f["family"] != "").all() and f["family"].nunique() > 1
        if has_family:
            fam_of = f.groupby("llm", sort=True)["family"].first()
            codes, labs = sorted_codes(fam_of)
            self.labels["family"] = labs
            self.llm_family = codes
        else:
            self.llm_family = None
        # Cells (unit×task) and the nesting tree above them: unit → transcript → teacher.
        # ``parents[k]`` maps each node of level k−1 (cells first) to its parent at level k.
        unit_all, _ = sorted_codes(f["unit_id"])
        _, self.cell = np.unique(unit_all.astype(np.int64) * len(self.labels["task"]) + self.task,
                                 return_inverse=True)  # sorted by unit, then task
        self.cell = self.cell.ravel().astype(np.int32)
        cells = (f[["unit_id", "task", "transcript_id", "teacher_id"]].assign(_cell=self.cell)
                 .drop_duplicates("_cell").sort_values("_cell"))
        unit_code, self.labels["unit"] = sorted_codes(cells["unit_id"])
        self.cell_task = pd.Categorical(cells["task"], categories=self.labels["task"]).codes.astype(
            np.int32)
        self.reference_weights = self._reference_weights(f)
        self.parents = [("unit", unit_code)]
        level = cells.drop_duplicates("unit_id").sort_values("unit_id")
        for col, name in (("transcript_id", "transcript"), ("teacher_id", "teacher")):
            if (level[col] == "").any():
                continue
            codes, self.labels[name] = sorted_codes(level[col])
            self.parents.append((name, codes))
            level = level.drop_duplicates(col).sort_values(col)

    def _reference_weights(self, f: pd.DataFrame) -> np.ndarray | None:
        refs = f["reference_raters"]
        if (refs == "").any():
            return None
        codes, combos = sorted_codes(refs)
        sets = [c.split(RATER_SEPARATOR) for c in combos]
        experts = sorted({e for s in sets for e in s})
        self.labels["expert"] = experts
        index = {e: i for i, e in enumerate(experts)}
        table = np.zeros((len(combos), len(experts)))
        for i, s in enumerate(sets):
            for e in s:
                table[i, index[e]] += 1.0 / len(s)
        first = np.zeros(int(self.cell.max()) + 1, dtype=np.int64)
        first[self.cell[::-1]] = np.arange(len(self.cell))[::-1]
        return table[codes[first]]

    @property
    def n_ratings(self) -> int:
        return int(self.error.shape[0])

    @property
    def levels(self) -> list[str]:
        """Nested levels above the cell that the data identify, bottom-up."""
        return [name for name, _ in self.parents]

    def data_hash(self) -> str:
        """SHA-256 of the table's content (labels and their canonical codes, float bytes)."""
        return frame_hash(self.frame, FRAME_COLUMNS)

    def to_dataset(self) -> xr.Dataset:
        """The table as stored in results files (codes + labels), with the scale choice."""
        ds = frame_to_dataset(self.frame, TEXT_COLUMNS, NUMBER_COLUMNS)
        ds.attrs = {"task_scale": json.dumps(self.task_scale), "error_scale": self.error_scale,
                    "n_experts": self.n_experts, "n_expert_ratings": self.n_expert_ratings}
        return ds

    @classmethod
    def from_dataset(cls, ds: xr.Dataset) -> MisalignmentData:
        return cls.from_frame(dataset_to_frame(ds, TEXT_COLUMNS, NUMBER_COLUMNS),
                              error_scale=ds.attrs["error_scale"],
                              task_scale=json.loads(ds.attrs["task_scale"]),
                              n_experts=int(ds.attrs["n_experts"]),
                              n_expert_ratings=int(ds.attrs["n_expert_ratings"]))

    def summary(self) -> dict:
        out = {"ratings": self.n_ratings, "experts": self.n_experts,
               "expert_ratings": self.n_expert_ratings, "error_scale": self.error_scale}
        for dim in ("llm", "family", "prompt", "task", "unit", "transcript", "teacher"):
            if dim in self.labels:
                out[dim] = len(self.labels[dim])
        out["cells"] = int(self.cell.max()) + 1 if self.n_ratings else 0
        return out

    @classmethod
    def from_frame(cls, frame: pd.DataFrame, error_scale: str, task_scale: dict[str, float],
                   n_experts: int = 0, n_expert_ratings: int = 0) -> MisalignmentData:
        if "reference_raters" not in frame.columns:  # older tables: raters unknown
            frame = frame.assign(reference_raters="")
        frame = frame[FRAME_COLUMNS].reset_index(drop=True)
        for col in FRAME_COLUMNS:
            if col not in ("score", "reference", "error") and not isinstance(
                    frame[col].dtype, pd.CategoricalDtype):
                frame[col] = clean_text(frame[col])
        return cls(frame=frame, error_scale=error_scale, task_scale=dict(task_scale),
                   n_experts=n_experts, n_expert_ratings=n_expert_ratings)



def clean_ratings(r: pd.DataFrame) -> pd.DataFrame:
    """Text columns (those not already categorical) with their labels cleaned."""
    text = [c for c in r.columns if c != "score" and not isinstance(r[c].dtype,
                                                                      pd.CategoricalDtype)]
    return r.assign(**{c: clean_text(r[c]) for c in text}) if text else r


def expert_sd_by_task(experts: pd.DataFrame, tasks, source: str, hint: str = ""
                      ) -> dict[str, float]:
    """SD of single expert ratings per task (the ``expert-sd`` scale); a task whose expert
    ratings have no spread is a plain problem."""
    sd = experts.groupby("task", observed=True)["score"].std(ddof=1)
    bad = sorted(str(t) for t in tasks if not (sd.get(t, np.nan) > 0))
    if bad:
        raise ValidationError([Problem(
            source, f"task(s) {', '.join(bad)}: the expert ratings have no spread (fewer than "
            f"2 or all equal), so the expert-sd scale is undefined{hint}", column="score")])
    return {str(t): float(sd[t]) for t in sorted(map(str, tasks))}

def build_misalignment(table: RatingsTable, error_scale: str = "expert-sd",
                       tasks: list[str] | None = None) -> MisalignmentData:
    """Expert reference per unit×task, the LLM errors, and the common scale across tasks."""
    if error_scale not in ERROR_SCALES:
        raise ValueError(f"error_scale must be one of {ERROR_SCALES}, not {error_scale!r}")
    r = clean_ratings(table.ratings)
    if tasks is not None:
        unknown = sorted(set(tasks) - set(r["task"]))
        if unknown:
            raise ValidationError([Problem(table.source, f"task(s) {', '.join(unknown)} not in the "
                                           "data", column="task")])
        r = r[r["task"].isin(tasks)]
    experts = r[r["rater_kind"] == "expert"]
    llms = r[r["rater_kind"] == "llm"]
    if llms.empty:
        raise ValidationError([Problem(table.source, "no LLM ratings: nothing to compare with the "
                                       "experts", column="rater_kind")])
    by_cell = experts.groupby(["unit_id", "task"], sort=False, observed=True)
    ref = pd.DataFrame({
        "reference": by_cell["score"].mean(),
        "reference_raters": by_cell["rater"].agg(
            lambda r: RATER_SEPARATOR.join(sorted(map(str, r))))})
    if error_scale == "expert-sd":
        task_scale = expert_sd_by_task(experts, llms["task"].unique(), table.source,
                                       "; use --error-scale raw")
    else:
        task_scale = {str(t): 1.0 for t in sorted(llms["task"].unique())}
    f = llms.join(ref, on=["unit_id", "task"])
    f = f.rename(columns={"rater": "llm"})
    per_task = pd.Series(task_scale, dtype=float).reindex(f["task"].cat.categories)
    f["error"] = (f["score"] - f["reference"]) / per_task.to_numpy()[
        np.asarray(f["task"].cat.codes, dtype=np.int64)]
    data = MisalignmentData.from_frame(
        f, error_scale, task_scale, n_experts=int(experts["rater"].nunique()),
        n_expert_ratings=len(experts))
    data.dropped = table.dropped
    return data
