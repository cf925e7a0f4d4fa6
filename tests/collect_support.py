"""Helpers for the collection tests: units, experts and study files aimed at the test server."""

from __future__ import annotations

import csv
import os
import random
import sqlite3
import subprocess
import sys
from pathlib import Path

PLANTED_KEY = "sk-misalign-PLANTED-7d1c0e5b9a"
WORDS = ("teacher asks students why fractions equal parts explain answer great thinking sit "
         "down partner share model number line halves thirds compare bigger smaller reason "
         "agree disagree remember carry tenths whole listen quiet thank you").split()


def write_units(path: Path, n: int, seed: int = 0, inject: dict[int, str] | None = None) -> Path:
    rng = random.Random(seed)
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["unit_id", "text", "transcript_id", "teacher_id"])
        for i in range(n):
            text = "T: " + " ".join(rng.choice(WORDS) for _ in range(25)) + "\nS: " + \
                " ".join(rng.choice(WORDS) for _ in range(10))
            if inject and i in inject:
                text += "\n" + inject[i]
            w.writerow([f"u{i:03d}", text, f"tr{i // 3}", f"te{i // 6}"])
    return path


def write_experts(path: Path, n: int, tasks: dict[str, tuple[int, int]], seed: int = 1) -> Path:
    rng = random.Random(seed)
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["unit_id", "task", "rater", "rater_kind", "prompt", "score",
                    "transcript_id", "teacher_id"])
        for i in range(n):
            for task, (lo, hi) in tasks.items():
                for e in ("E1", "E2"):
                    w.writerow([f"u{i:03d}", task, e, "expert", "", rng.randint(lo, hi),
                                f"tr{i // 3}", f"te{i // 6}"])
    return path


def write_study(path: Path, api_base: str, *, units: str = "units.csv",
                tasks=("CLPC", "EXPL"), strategies=("base", "cot"),
                llms=(("mock-a", "openai/mock-a", "f1"), ("mock-b", "openai/mock-b", "f1"),
                      ("mock-c", "openai/mock-c", "f2")),
                replicates: int = 1, run: dict | None = None, cost_cap: float | None = None,
                extra_llm: str = "") -> Path:
    run = {"concurrency": 32, "timeout_s": 1.0, "max_attempts": 4, "backoff_base_s": 0.02,
           "backoff_max_s": 0.2} | (run or {})
    lines = ['name = "test"', f'units = "{units}"', f"tasks = {list(tasks)!r}".replace("'", '"'),
             f"strategies = {list(strategies)!r}".replace("'", '"'), f"replicates = {replicates}"]
    if cost_cap is not None:
        lines.append(f"cost_cap_usd = {cost_cap}")
    lines.append("[run]")
    lines += [f"{k} = {v!r}" for k, v in run.items()]
    for name, model, family in llms:
        lines += ["[[llm]]", f'name = "{name}"', f'model = "{model}"', f'family = "{family}"',
                  f'api_base = "{api_base}"']
        if extra_llm:
            lines.append(extra_llm)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def cli(*args: str, cwd: Path | None = None, env: dict | None = None
        ) -> subprocess.CompletedProcess:
    e = os.environ | {"LITELLM_LOCAL_MODEL_COST_MAP": "True"} | (env or {})
    return subprocess.run([sys.executable, "-m", "misalign.cli", *args], cwd=cwd, env=e,
                          capture_output=True, text=True)


def scored_table(store: Path) -> list[tuple]:
    with sqlite3.connect(store) as db:
        return db.execute("SELECT key, score FROM requests WHERE status = 'scored' "
                          "ORDER BY key").fetchall()


def count(store: Path, sql: str) -> int:
    db = sqlite3.connect(f"file:{store}?mode=ro", uri=True)
    try:
        return int(db.execute(sql).fetchone()[0])
    finally:
        db.close()
