"""From validated ratings to the joint measurement model's table (MEASUREMENT.md).

Every rating, expert or LLM, stays a score: per task it is centred on the experts' mean and
divided by the SD of single expert ratings of that task, so tasks share one scale and a source's
loading and noise read in expert SDs. A *source* is one LLM × prompt; a *column* of the
likelihood is a (task, source) or a (task, expert rater). The tree is per task: a cell is a
unit × task, its lesson a transcript × task, its teacher a teacher × task, so tasks stack in one
pass with no node shared between them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import xarray as xr

from .categorical import dataset_to_frame, frame_hash, frame_to_dataset
from .io import RatingsTable
from .misalignment import clean_ratings, expert_sd_by_task
from .schema import Problem, ValidationError
from .tables import LLMTable, TeacherTable

SOURCE_SEPARATOR = " × "
TEXT_COLUMNS = ["unit_id", "transcript_id", "teacher_id", "task", "kind", "llm", "prompt",
                "family", "source"]
NUMBER_COLUMNS = ["score", "y"]


@dataclass
class MeasurementData:
    """One row per rating (expert or LLM) on the expert-SD scale, as integer codes and labels;
    value-added per teacher where given."""

    frame: pd.DataFrame  # unit_id, transcript_id, teacher_id, task, kind, source, llm, prompt, y
    task_scale: dict[str, float]
    task_centre: dict[str, float]
    value_added: dict[str, float]
    va_se: dict[str, float] = field(default_factory=dict)  # where the user gave it
    benchmark: dict[str, float] = field(default_factory=dict)  # per LLM
    notes: list[str] = field(default_factory=list)  # what the side tables left out, counted

    def __post_init__(self) -> None:
        f = self.frame
        self.tasks = sorted(f["task"].unique().tolist())
        self.sources = sorted(f.loc[f["kind"] == "llm", "source"].unique().tolist())
        self.raters = sorted(f.loc[f["kind"] == "expert", "source"].unique().tolist())
        task = f["task"].map({t: i for i, t in enumerate(self.tasks)}).to_numpy(np.int64)
        columns = self.sources + self.raters
        local = f["source"].map({c: i for i, c in enumerate(columns)}).to_numpy(np.int64)
        self.n_columns = len(self.tasks) * len(columns)
        self.column = task * len(columns) + local
        self.task = task
        self.y = f["y"].to_numpy(float)
        cell_key = f["task"].astype(str) + "\x1f" + f["unit_id"].astype(str)
        lesson_key = f["task"].astype(str) + "\x1f" + f["transcript_id"].astype(str)
        teacher_key = f["task"].astype(str) + "\x1f" + f["teacher_id"].astype(str)
        self.cell, cells = pd.factorize(cell_key, sort=True)
        lesson, lessons = pd.factorize(lesson_key, sort=True)
        teacher, teachers = pd.factorize(teacher_key, sort=True)
        self.cell_lesson = np.zeros(len(cells), np.int64)
        self.cell_lesson[self.cell] = lesson
        self.lesson_teacher = np.zeros(len(lessons), np.int64)
        self.lesson_teacher[lesson] = teacher
        self.cell_task = np.zeros(len(cells), np.int64)
        self.cell_task[self.cell] = task
        self.lesson_task = self.cell_task[np.unique(self.cell_lesson, return_index=True)[1]]
        self.teacher_task = np.zeros(len(teachers), np.int64)
        self.teacher_task[teacher] = task
        self.teacher_names = [str(k).split("\x1f", 1)[1] for k in teachers]
        self.va = np.array([self.value_added.get(n, np.nan) for n in self.teacher_names], float)

    @property
    def has_value_added(self) -> bool:
        return bool(np.isfinite(self.va).any())

    def value_added_nodes(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per teacher node (task × teacher): value-added standardised over the teachers that
        have it (0 where missing), 1.0/0.0 observed, and its known error variance on that
        scale (``va_se``², 0 where not given)."""
        given = np.array([self.value_added[n] for n in sorted(set(self.teacher_names))
                          if n in self.value_added], float)
        centre, scale = given.mean(), given.std() if len(given) > 1 else 1.0
        scale = scale if scale > 0 else 1.0
        observed = np.isfinite(self.va)
        va = np.where(observed, (self.va - centre) / scale, 0.0)
        se = np.array([self.va_se.get(n, 0.0) for n in self.teacher_names], float)
        return va, observed.astype(float), (se / scale) ** 2

    @property
    def n_ratings(self) -> int:
        return len(self.frame)

    @property
    def n_local(self) -> int:
        """Columns per task: the sources, then the raters."""
        return len(self.sources) + len(self.raters)

    def source_labels(self) -> dict[str, tuple[list[str], np.ndarray]]:
        """The LLMs, prompts and families, each with every source's code into it (a family
        with no label is the LLM's own)."""
        f = self.frame[self.frame["kind"] == "llm"].drop_duplicates("source").set_index("source")
        fam = f["family"].where(f["family"] != "", f["llm"])
        out = {}
        for name, col in (("llm", f["llm"]), ("prompt", f["prompt"]), ("family", fam)):
            labels = sorted(col.unique().tolist())
            out[name] = (labels, np.array([labels.index(col[s]) for s in self.sources],
                                          np.int64))
        return out

    def dense_statistics(self) -> dict[str, np.ndarray]:
        """What the likelihood's leaves need. LLM ratings: counts ``N`` and sums ``S`` per
        (task, cell of that task, source), padded to the largest task, ``valid`` the padded
        position of every cell (in cell order). Expert ratings: count ``nE`` and sum ``sE`` per
        (task, padded cell), and one entry per (cell, rater) pair (``er_pos``, ``er_task``,
        ``er_rater``, ``er_n``) for the severities. Per (task, column), sources then raters:
        the rating count, sum and sum of squares."""
        K, T, Sn = self.n_local, len(self.tasks), len(self.sources)
        C = len(self.cell_task)
        bounds = np.searchsorted(self.cell_task, np.arange(T + 1))
        size = int(np.diff(bounds).max())
        pos = self.cell_task * size + np.arange(C) - bounds[self.cell_task]
        local = self.column % K
        llm = local < Sn
        flat = pos[self.cell[llm]] * Sn + local[llm]
        N = np.bincount(flat, minlength=T * size * Sn).astype(float)
        S = np.bincount(flat, weights=self.y[llm], minlength=T * size * Sn)
        ex = ~llm
        epos = pos[self.cell[ex]]
        pair = epos * max(len(self.raters), 1) + (local[ex] - Sn)
        pairs, count = np.unique(pair, return_counts=True)
        er_pos = pairs // max(len(self.raters), 1)
        tk = self.task * K + local
        N = N.reshape(T, size, Sn)
        # Balanced LLM ratings (every cell of a task rated alike): one row of counts per task,
        # so the count-side products are computed once per task, not once per cell.
        rows = N.reshape(T * size, Sn)[pos]
        first = N[self.cell_task, 0]
        S = S.reshape(T, size, Sn)
        folded = {}
        if (rows == first).all():
            N = N[:, :1]
            folded = self._cell_moments(S, pos, T, size)
        return folded | {"N": N, "S": S, "valid": pos,
                "nE": np.bincount(epos, minlength=T * size).astype(float).reshape(T, size),
                "sE": np.bincount(epos, weights=self.y[ex], minlength=T * size).reshape(T, size),
                "er_pos": er_pos, "er_task": er_pos // size,
                "er_rater": pairs % max(len(self.raters), 1), "er_n": count.astype(float),
                "n": np.bincount(tk, minlength=T * K).astype(float).reshape(T, K),
                "sum": np.bincount(tk, weights=self.y, minlength=T * K).reshape(T, K),
                "sq": np.bincount(tk, weights=self.y**2, minlength=T * K).reshape(T, K)}

    @staticmethod
    def _cell_moments(S: np.ndarray, pos: np.ndarray, T: int, size: int) -> dict:
        """Per task, over its cells: the number of cells, the mean row of LLM sums and the
        centred cross-products (sources × sources). In a balanced design every term of the
        likelihood that is quadratic in a cell's sums adds up through these, whatever the
        parameters (centred: no cancellation between large sums)."""
        valid = np.zeros(T * size, bool)
        valid[pos] = True
        valid = valid.reshape(T, size)
        n = valid.sum(1).astype(float)
        mean = S.sum(1) / np.maximum(n, 1.0)[:, None]
        dev = np.where(valid[:, :, None], S - mean[:, None, :], 0.0)
        return {"cells": n, "S_mean": mean, "S_cross": np.einsum("tcs,tcu->tsu", dev, dev)}

    def design(self) -> pd.DataFrame:
        """Per task, the data's design: cells per lesson (m), lessons per teacher (n), ratings
        per (cell, source) (k), and the mean of 1/(expert ratings) over cells an LLM rated."""
        f = self.frame
        rows = []
        for k, task in enumerate(self.tasks):
            cells = np.flatnonzero(self.cell_task == k)
            lessons = np.unique(self.cell_lesson[cells])
            g = f[(f["task"] == task)]
            llm = g[g["kind"] == "llm"]
            per_pair = llm.groupby(["unit_id", "source"], observed=True).size()
            experts = g[g["kind"] == "expert"].groupby("unit_id", observed=True).size()
            rated = experts.reindex(llm["unit_id"].unique()).dropna()
            rows.append({"task": task, "m": len(cells) / max(len(lessons), 1),
                         "n": len(lessons) / max(len(np.unique(self.lesson_teacher[lessons])), 1),
                         "k": float(per_pair.mean()) if len(per_pair) else 1.0,
                         "inv_experts": float((1.0 / rated).mean()) if len(rated) else 1.0})
        return pd.DataFrame(rows).set_index("task")

    def data_hash(self) -> str:
        return frame_hash(self.frame, TEXT_COLUMNS + NUMBER_COLUMNS)

    def to_dataset(self) -> xr.Dataset:
        ds = frame_to_dataset(self.frame, TEXT_COLUMNS, NUMBER_COLUMNS)
        ds.attrs = {"task_scale": json.dumps(self.task_scale),
                    "task_centre": json.dumps(self.task_centre),
                    "value_added": json.dumps(self.value_added),
                    "va_se": json.dumps(self.va_se), "benchmark": json.dumps(self.benchmark),
                    "data_notes": json.dumps(self.notes)}
        return ds

    @classmethod
    def from_dataset(cls, ds: xr.Dataset) -> MeasurementData:
        frame = dataset_to_frame(ds, TEXT_COLUMNS, NUMBER_COLUMNS, categorical=False)
        return cls(frame=frame, task_scale=json.loads(ds.attrs["task_scale"]),
                   task_centre=json.loads(ds.attrs["task_centre"]),
                   value_added=json.loads(ds.attrs["value_added"]),
                   va_se=json.loads(ds.attrs.get("va_se", "{}")),
                   benchmark=json.loads(ds.attrs.get("benchmark", "{}")),
                   notes=json.loads(ds.attrs.get("data_notes", "[]")))

    def summary(self) -> dict:
        f = self.frame
        return {"ratings": len(f), "expert_ratings": int((f["kind"] == "expert").sum()),
                "llm_ratings": int((f["kind"] == "llm").sum()), "sources": len(self.sources),
                "raters": len(self.raters), "task": len(self.tasks),
                "cells": int(self.cell.max()) + 1,
                "teachers_with_value_added": len(set(f["teacher_id"]) & set(self.value_added)),
                "llms_with_benchmark": len(set(f["llm"]) & set(self.benchmark))}


def build_measurement(table: RatingsTable, teachers: pd.DataFrame | TeacherTable | None = None,
                      llms: pd.DataFrame | LLMTable | None = None) -> MeasurementData:
    """The measurement table of validated ratings; ``teachers`` (``teacher_id``,
    ``value_added``[, ``va_se``]) adds value-added, ``llms`` (``rater``, ``benchmark``) the
    LLMs' benchmark scores (``data/tables.py`` reads both from files). Refuses, with one plain
    problem each, data the joint model cannot identify: no expert ratings, fewer than two LLM
    sources, or no unit × task rated by both an expert and an LLM."""
    r = clean_ratings(table.ratings)
    experts = r[r["rater_kind"] == "expert"]
    llm_rows = r[r["rater_kind"] == "llm"]
    problems = []
    if experts.empty:
        problems.append(Problem(table.source, "no expert ratings: the experts fix the scale of "
                                "true quality, so the joint model needs some", column="rater_kind"))
    sources = (llm_rows["rater"].astype(str) + SOURCE_SEPARATOR + llm_rows["prompt"].astype(str))
    if sources.nunique() < 2:
        problems.append(Problem(table.source, f"{sources.nunique()} LLM source(s) (LLM × "
                                "prompt): the error all LLMs share needs two or more rating the "
                                "same units", column="rater"))
    if not experts.empty and not llm_rows.empty:
        both = (experts[["unit_id", "task"]].drop_duplicates().astype(str)
                .merge(llm_rows[["unit_id", "task"]].drop_duplicates().astype(str)))
        if both.empty:
            problems.append(Problem(table.source, "no unit × task is rated by both an expert and "
                                    "an LLM", column="unit_id"))
    if problems:
        raise ValidationError(problems)
    centre = experts.groupby("task", observed=True)["score"].mean()
    tasks = sorted(set(llm_rows["task"].astype(str)) | set(experts["task"].astype(str)))
    scale = expert_sd_by_task(experts, tasks, table.source)
    frame = pd.DataFrame({
        "unit_id": r["unit_id"].astype(str).to_numpy(),
        "transcript_id": r["transcript_id"].astype(str).to_numpy(),
        "teacher_id": r["teacher_id"].astype(str).to_numpy(),
        "task": r["task"].astype(str).to_numpy(),
        "kind": r["rater_kind"].astype(str).to_numpy(),
        "llm": np.where(r["rater_kind"] == "llm", r["rater"].astype(str), ""),
        "prompt": np.where(r["rater_kind"] == "llm", r["prompt"].astype(str), ""),
        "family": np.where(r["rater_kind"] == "llm", r["family"].astype(str), ""),
        "source": np.where(r["rater_kind"] == "llm", r["rater"].astype(str) + SOURCE_SEPARATOR
                           + r["prompt"].astype(str), r["rater"].astype(str)),
        "score": r["score"].to_numpy(float)})
    mean = {t: float(centre[t]) for t in tasks}
    frame["y"] = ((frame["score"] - frame["task"].map(mean)) / frame["task"].map(scale))
    va, va_se, bench, notes = {}, {}, {}, []
    if isinstance(teachers, TeacherTable):
        notes += teachers.notes()
        teachers = teachers.frame
    if teachers is not None and "value_added" in teachers:
        given = teachers[teachers["value_added"].notna()]
        va = dict(zip(given["teacher_id"].astype(str), given["value_added"].astype(float),
                      strict=True))
        if "va_se" in given:
            se = given[given["va_se"].notna()]
            va_se = dict(zip(se["teacher_id"].astype(str), se["va_se"].astype(float),
                             strict=True))
    if isinstance(llms, LLMTable):
        notes += llms.notes()
        llms = llms.frame
    if llms is not None and "benchmark" in llms:
        name = "rater" if "rater" in llms else "llm"
        bench = dict(zip(llms[name].astype(str), llms["benchmark"].astype(float), strict=True))
    return MeasurementData(frame=frame, task_scale=scale, task_centre=mean, value_added=va,
                           va_se=va_se, benchmark=bench, notes=notes)
