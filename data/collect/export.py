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


_SAME_STUDY = ("tasks", "strategies", "replicates")


def _read(store_path: str | Path) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, dict]:
    with Store(store_path, readonly=True) as store:
        tasks = _task_table(store)
        llm = store.frame(
            "SELECT r.key, r.unit_id, r.task, r.rater, 'llm' AS rater_kind, r.strategy AS prompt, "
            "r.score, r.replicate, u.transcript_id, u.teacher_id, r.family FROM requests r "
            "JOIN units u ON u.unit_id = r.unit_id WHERE r.status = 'scored' ORDER BY r.rowid")
        excluded = store.frame(
            "SELECT key, rater, strategy AS prompt, task, unit_id, replicate, status, attempts, "
            "COALESCE(last_error, 'not attempted yet') AS reason FROM requests "
            "WHERE status != 'scored' ORDER BY rowid")
        study = json.loads(store.meta("study") or "{}")
    return tasks, llm, excluded, study


def _merge(paths: list[Path]) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Several stores of one study (shards, or machines) as one: a request scored in any store
    is scored; the same request scored in two stores with different scores keeps the first
    and reports the other; a request no store scored is reported once."""
    parts = [_read(p) for p in paths]
    tasks, _, _, study = parts[0]
    ident = {k: study.get(k) for k in _SAME_STUDY}
    for p, (_, _, _, other) in zip(paths[1:], parts[1:], strict=True):
        diff = [k for k in _SAME_STUDY if other.get(k) != ident[k]]
        if diff:
            raise ValidationError([Problem(file=str(p), message=(
                f"not the same study as {paths[0]} (differs in {', '.join(diff)}): only stores "
                "of one study merge"))])
    scored = pd.concat([llm for _, llm, _, _ in parts], ignore_index=True)
    dup = scored.duplicated("key", keep="first")
    first = scored.loc[~dup].set_index("key")["score"]
    again = scored.loc[dup]
    clash = again.loc[again["score"].to_numpy() != first.loc[again["key"]].to_numpy()]
    llm = scored.loc[~dup].reset_index(drop=True)
    excluded = pd.concat([ex for _, _, ex, _ in parts], ignore_index=True)
    excluded = excluded.loc[~excluded["key"].isin(set(llm["key"]))]
    excluded = excluded.drop_duplicates("key", keep="first")
    if len(clash):
        excluded = pd.concat([excluded, pd.DataFrame({
            "key": clash["key"], "rater": clash["rater"], "prompt": clash["prompt"],
            "task": clash["task"], "unit_id": clash["unit_id"],
            "replicate": clash["replicate"], "status": "conflicting_duplicate",
            "attempts": np.nan,
            "reason": "scored again in another store with a different score; the first "
                      "store's score is exported"})], ignore_index=True)
    return tasks, llm, excluded


def export_ratings(store_path: str | Path | list, out: str | Path,
                   experts: str | Path | None = None) -> Export:
    """``store_path``: one store, or several of one study (``--shard`` runs) merged."""
    out = Path(out)
    paths = [Path(p) for p in store_path] if isinstance(store_path, list | tuple) \
        else [Path(store_path)]
    if len(paths) == 1:
        tasks, llm, excluded, _ = _read(paths[0])
    else:
        tasks, llm, excluded = _merge(paths)
    llm = llm.drop(columns="key")
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
