"""The store as a long ratings table (the format ``misalign fit`` reads), merged with the
experts' ratings, plus the task table of the study's rubrics.

Only scored requests become ratings. Everything else is reported, never dropped silently: failed
and pending requests (with their last error) and, when experts are given, LLM ratings of a unit
and task no expert rated (they have no reference) go to an ``.excluded.csv`` beside the output.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..atomic import atomic_write, atomic_write_text
from ..io import load_ratings, validate_ratings
from ..schema import RATING_COLUMNS, Problem, ValidationError
from .store import Store

EXCLUDED_COLUMNS = ["key", "rater", "prompt", "task", "unit_id", "replicate", "status",
                    "attempts", "reason"]


@dataclass
class Export:
    ratings: pd.DataFrame
    tasks: pd.DataFrame
    excluded: pd.DataFrame
    paths: dict[str, Path]

    def counts(self) -> dict[str, int]:
        kind = self.ratings["rater_kind"].astype(str)
        reasons = self.excluded["status"].astype(str).value_counts().to_dict()
        return {"llm_ratings": int((kind == "llm").sum()),
                "expert_ratings": int((kind == "expert").sum()),
                "excluded": len(self.excluded)} | {f"excluded_{k}": int(v)
                                                   for k, v in reasons.items()}


def _task_table(store: Store) -> pd.DataFrame:
    raw = store.meta("study")
    if not raw:
        raise ValidationError([Problem(file=str(store.path), message=(
            "the store has no study description yet (run `misalign collect` first)"))])
    tasks = json.loads(raw)["tasks"]
    return pd.DataFrame([(t, float(v["scale"][0]), float(v["scale"][1]))
                         for t, v in tasks.items()], columns=["task", "scale_min", "scale_max"])


def export_ratings(store_path: str | Path, out: str | Path, experts: str | Path | None = None
                   ) -> Export:
    out = Path(out)
    with Store(store_path, readonly=True) as store:
        tasks = _task_table(store)
        llm = store.frame(
            "SELECT r.unit_id, r.task, r.rater, 'llm' AS rater_kind, r.strategy AS prompt, "
            "r.score, r.replicate, u.transcript_id, u.teacher_id, r.family FROM requests r "
            "JOIN units u ON u.unit_id = r.unit_id WHERE r.status = 'scored' ORDER BY r.rowid")
        excluded = store.frame(
            "SELECT key, rater, strategy AS prompt, task, unit_id, replicate, status, attempts, "
            "COALESCE(last_error, 'not attempted yet') AS reason FROM requests "
            "WHERE status != 'scored' ORDER BY rowid")
    parts = [llm]
    if experts is not None:
        table = load_ratings(experts, tasks=tasks)
        exp = table.ratings
        exp = exp[exp["rater_kind"].astype(str) == "expert"]
        exp = pd.DataFrame({c: exp[c].astype(str) if c != "score" else exp[c]
                            for c in RATING_COLUMNS})
        exp["replicate"] = exp["replicate"].replace("", "1")
        reference = set(zip(exp["unit_id"], exp["task"], strict=True))
        has_ref = np.array([(u, t) in reference for u, t in
                            zip(llm["unit_id"], llm["task"], strict=True)], dtype=bool)
        if (~has_ref).any():
            miss = llm.loc[~has_ref]
            excluded = pd.concat([excluded, pd.DataFrame({
                "key": "", "rater": miss["rater"], "prompt": miss["prompt"],
                "task": miss["task"], "unit_id": miss["unit_id"],
                "replicate": miss["replicate"], "status": "no_expert_reference",
                "attempts": np.nan,
                "reason": "no expert rating of this unit and task in " + str(experts)})],
                ignore_index=True)
            llm = llm.loc[has_ref]
        parts = [exp, llm]
    ratings = pd.concat(parts, ignore_index=True)[list(RATING_COLUMNS)]
    ratings["replicate"] = ratings["replicate"].astype(str)
    ratings["score"] = ratings["score"].astype(float)
    if experts is not None:
        validate_ratings(ratings.copy(), tasks=tasks, file=str(out))  # raises with every problem
    paths = {"ratings": out}
    if out.suffix.lower() in (".parquet", ".pq"):
        atomic_write(out, lambda p: ratings.to_parquet(p, index=False))
    else:
        atomic_write_text(out, ratings.to_csv(index=False))
    paths["tasks"] = atomic_write_text(out.with_name(out.stem + ".tasks.csv"),
                                       tasks.to_csv(index=False))
    if len(excluded):
        paths["excluded"] = atomic_write_text(out.with_name(out.stem + ".excluded.csv"),
                                              excluded[EXCLUDED_COLUMNS].to_csv(index=False))
    return Export(ratings, tasks, excluded, paths)
