"""The ratings store: one SQLite database (WAL) per study.

``requests`` holds one row per rating to collect, keyed by a hash of (rater, model, strategy,
task, unit, replicate, template version), with its status (pending, scored, failed, or batched:
in a provider batch not yet collected), attempts, last error and, once scored, the score.
``responses`` holds every attempt: raw text, parse status, tokens, cost, latency, timestamps,
or the error that ended it. One attempt is written in one transaction that also updates its
request, so a process killed at any moment (even by SIGKILL) leaves each request either
untouched or settled; a rerun redoes only what is not scored. A partial unique index makes a
second scored response for one key impossible: an answer for a key already scored (a batch
line delivered twice) is kept as a ``duplicate`` response and changes nothing.
``batches`` and ``batch_items`` are the batch mode's ledger (batch_ledger.py).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import sqlite3
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from .store_schema import SCHEMA, StoreError, upgrade_v1

SCHEMA_VERSION = 2
STATUSES = ("pending", "scored", "failed", "batched")


REQUEST_FIELDS = ("key", "rater", "model", "family", "strategy", "task", "unit_id", "replicate",
                  "template_version")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def rating_key(rater: str, model: str, strategy: str, task: str, unit_id: str, replicate: int,
               template_version: str) -> str:
    ident = json.dumps([rater, model, strategy, task, unit_id, replicate, template_version])
    return hashlib.sha256(ident.encode()).hexdigest()[:32]


@dataclass
class Attempt:
    """One HTTP attempt and how it ended."""

    key: str
    attempt: int
    outcome: str  # scored, parse_failure, error
    settles: bool  # True: the request's status changes (scored or failed for this run)
    started_at: str
    finished_at: str
    latency_s: float
    error_kind: str | None = None
    error: str | None = None
    http_status: int | None = None
    raw_text: str | None = None
    score: float | None = None
    parse_status: str | None = None
    tokens_in: int | None = None
    tokens_out: int | None = None
    cost: float | None = None


class Store:
    def __init__(self, path: str | Path, readonly: bool = False) -> None:
        self.path = Path(path)
        if readonly:
            if not self.path.is_file():
                raise StoreError(f"{self.path}: no such store")
            self.db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True)
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # Long: shards on one store wait for each other's plan (seconds for a million rows).
            self.db = sqlite3.connect(self.path, timeout=300)
            self._create()
        self.db.execute("PRAGMA foreign_keys=ON")
        try:
            version = self.meta("schema_version")
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{self.path}: not a misalign store ({exc})") from None
        # Reading a version-1 store needs no upgrade: its tables are a subset of version 2's.
        if version != str(SCHEMA_VERSION) and not (readonly and version == "1"):
            raise StoreError(f"{self.path}: store schema {version}, this misalign reads "
                             f"{SCHEMA_VERSION}")

    def _create(self, wait_s: float = 30.0) -> None:
        """WAL mode and the schema. Switching a new file to WAL takes an exclusive lock that
        SQLite's busy timeout does not wait for: processes that open one new store at once
        (shards) retry until the first has set it up."""
        deadline = time.monotonic() + wait_s
        while True:
            try:
                self.db.execute("PRAGMA journal_mode=WAL")
                # NORMAL in WAL mode: a commit survives the process being killed (the OS has
                # the WAL pages); only a power cut can lose the last commits, then redone.
                self.db.execute("PRAGMA synchronous=NORMAL")
                if self.meta("schema_version") == "1":
                    upgrade_v1(self.db, self.path)
                self.db.executescript(SCHEMA)
                self._meta_default("schema_version", str(SCHEMA_VERSION))
                self._meta_default("created_at", now())
                self._meta_default("store_id", uuid.uuid4().hex[:12])
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.05 + 0.1 * random.random())

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- metadata -------------------------------------------------------------------------
    def _meta_default(self, name: str, value: str) -> None:
        with self.db:
            self.db.execute("INSERT OR IGNORE INTO meta VALUES (?, ?)", (name, value))

    def meta(self, name: str) -> str | None:
        try:
            row = self.db.execute("SELECT value FROM meta WHERE name = ?", (name,)).fetchone()
        except sqlite3.OperationalError:
            return None
        return row[0] if row else None

    def set_meta(self, name: str, value: str) -> None:
        with self.db:
            self.db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (name, value))

    # -- units and plan -------------------------------------------------------------------
    def sync_units(self, rows: Iterable[tuple[str, str, str, str]]) -> list[str]:
        """Insert units (id, transcript, teacher, text digest); return the ids whose text
        differs from what the store already rated (nothing is written then)."""
        rows = list(rows)
        known = dict(self.db.execute("SELECT unit_id, text_sha256 FROM units"))
        changed = [u for u, _, _, d in rows if u in known and known[u] != d]
        if changed:
            return changed
        with self.db:
            self.db.executemany("INSERT OR IGNORE INTO units VALUES (?, ?, ?, ?)", rows)
        return []

    def sync_plan(self, rows: Iterable[tuple]) -> int:
        """Add the requests not yet in the store; mark the plan of this run (a temp table).
        Returns how many were new."""
        self.db.execute("CREATE TEMP TABLE IF NOT EXISTS plan (key TEXT PRIMARY KEY)")
        with self.db:
            self.db.execute("DELETE FROM plan")
        stamp = now()
        with self.db:
            # The write lock first: a transaction that read before writing cannot wait for
            # another process's write (SQLite's WAL answers "locked" at once), as shards on one
            # store would; and the count of new requests is then this process's own.
            self.db.execute("BEGIN IMMEDIATE")
            before = self.db.execute("SELECT COUNT(*) FROM requests").fetchone()[0]
            chunk: list[tuple] = []
            for r in rows:
                chunk.append(r)
                if len(chunk) >= 20_000:
                    self._insert_plan(chunk, stamp)
                    chunk = []
            if chunk:
                self._insert_plan(chunk, stamp)
            return self.db.execute("SELECT COUNT(*) FROM requests").fetchone()[0] - before

    def _insert_plan(self, chunk: list[tuple], stamp: str) -> None:
        self.db.executemany(
            "INSERT OR IGNORE INTO requests (key, rater, model, family, strategy, task, unit_id, "
            "replicate, template_version, created_at, updated_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", [(*r, stamp, stamp) for r in chunk])
        self.db.executemany("INSERT OR IGNORE INTO plan VALUES (?)", [(r[0],) for r in chunk])

    def plan_counts(self) -> dict[str, int]:
        rows = self.db.execute("SELECT r.status, COUNT(*) FROM requests r JOIN plan p "
                               "ON p.key = r.key GROUP BY r.status").fetchall()
        return {s: 0 for s in STATUSES} | dict(rows)

    def todo(self, retry_failed: bool = True, batch: int = 5_000) -> Iterator[tuple]:
        """Requests of this run's plan that still need a score, in plan order, in batches
        (so a million-request study is never all in memory). Yields
        (rowid, key, rater, model, family, strategy, task, unit_id, replicate, attempts)."""
        statuses = ("pending", "failed") if retry_failed else ("pending",)
        last = 0
        marks = ",".join("?" * len(statuses))
        while True:
            rows = self.db.execute(
                "SELECT r.rowid, r.key, r.rater, r.model, r.family, r.strategy, r.task, "
                "r.unit_id, r.replicate, r.attempts FROM requests r JOIN plan p ON p.key = r.key "
                f"WHERE r.rowid > ? AND r.status IN ({marks}) ORDER BY r.rowid LIMIT ?",
                (last, *statuses, batch)).fetchall()
            if not rows:
                return
            yield from rows
            last = rows[-1][0]

    # -- runs and attempts ----------------------------------------------------------------
    def settle_dead_runs(self) -> list[int]:
        """Mark as 'killed' the runs still 'running' whose process is gone (SIGKILL, power
        cut): their requests are consistent; only the run row was never finished."""
        dead = []
        for run_id, options in self.db.execute(
                "SELECT run_id, options FROM runs WHERE status = 'running'").fetchall():
            pid = json.loads(options or "{}").get("pid")
            if pid is None or not _alive(int(pid)):
                dead.append(run_id)
        if dead:
            with self.db:
                self.db.executemany("UPDATE runs SET status = 'killed', finished_at = ? "
                                    "WHERE run_id = ?", [(now(), r) for r in dead])
        return dead

    def begin_run(self, options: dict) -> int:
        """Start a run. Runs at once on one store must be shards of one split (``options``'
        ``shard`` "i/n", distinct i, same n): another live run of the whole plan, of the same
        shard or of another split is refused (checked and inserted in one transaction)."""
        self.settle_dead_runs()
        mine = options.get("shard")
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            for run_id, raw in self.db.execute(
                    "SELECT run_id, options FROM runs WHERE status = 'running'").fetchall():
                o = json.loads(raw or "{}")
                other = o.get("shard")
                if o.get("pid") is not None and not _alive(int(o["pid"])):
                    continue
                if mine is None or other is None or other == mine or \
                        other.split("/")[1] != mine.split("/")[1]:
                    raise StoreError(
                        f"run {run_id} (process {o.get('pid')}) is collecting "
                        f"{'shard ' + other if other else 'the whole plan'} of this store now; "
                        "wait for it, or run disjoint shards (--shard i/n, one i per process)")
            cur = self.db.execute("INSERT INTO runs (started_at, status, options) VALUES "
                                  "(?, 'running', ?)", (now(), json.dumps(options)))
        return int(cur.lastrowid)

    def finish_run(self, run_id: int, status: str, summary: dict) -> None:
        with self.db:
            self.db.execute("UPDATE runs SET finished_at = ?, status = ?, summary = ? WHERE "
                            "run_id = ?", (now(), status, json.dumps(summary), run_id))

    def record(self, run_id: int, a: Attempt) -> None:
        with self.db:
            self.write_attempt(run_id, a)

    def write_attempt(self, run_id: int, a: Attempt, status: str | None = None) -> None:
        """Insert one attempt and update its request, inside the caller's transaction.
        ``status``: the request's status after a failed attempt (default: failed when the
        attempt settles, else unchanged). Any answer for a key already scored is kept as a
        ``duplicate`` response and changes nothing but the attempt count."""
        row = self.db.execute("SELECT status FROM requests WHERE key = ?", (a.key,)).fetchone()
        if row and row[0] == "scored":  # any later answer for a scored key changes nothing
            a.outcome = "duplicate"
        self.db.execute(
            "INSERT INTO responses (key, run_id, attempt, outcome, error_kind, error, "
            "http_status, raw_text, score, parse_status, tokens_in, tokens_out, cost, "
            "latency_s, started_at, finished_at) VALUES "
            "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (a.key, run_id, a.attempt, a.outcome, a.error_kind, a.error, a.http_status,
             a.raw_text, a.score, a.parse_status, a.tokens_in, a.tokens_out, a.cost,
             a.latency_s, a.started_at, a.finished_at))
        if a.outcome == "duplicate":
            self.db.execute("UPDATE requests SET attempts = MAX(attempts, ?) WHERE key = ?",
                            (a.attempt, a.key))
            return
        if a.outcome == "scored":
            self.db.execute("UPDATE requests SET status = 'scored', score = ?, attempts = ?, "
                            "last_error = NULL, updated_at = ? WHERE key = ?",
                            (a.score, a.attempt, a.finished_at, a.key))
        else:
            reason = f"{a.error_kind}: {a.error}" if a.error else a.error_kind
            if status is None:
                status = "failed" if a.settles else None
            self.db.execute("UPDATE requests SET status = COALESCE(?, status), "
                            "attempts = ?, last_error = ?, updated_at = ? WHERE key = ?",
                            (status, a.attempt, reason, a.finished_at, a.key))

    # -- reading --------------------------------------------------------------------------
    def counts(self) -> dict[str, int]:
        rows = self.db.execute("SELECT status, COUNT(*) FROM requests GROUP BY status")
        return {s: 0 for s in STATUSES} | dict(rows.fetchall())

    def failure_reasons(self) -> dict[str, int]:
        rows = self.db.execute(
            "SELECT substr(last_error, 1, instr(last_error || ':', ':') - 1), COUNT(*) "
            "FROM requests WHERE status = 'failed' GROUP BY 1 ORDER BY 2 DESC")
        return dict(rows.fetchall())

    def scored_keys(self) -> set[str]:
        return {k for (k,) in self.db.execute("SELECT key FROM requests WHERE status = 'scored'")}

    def spent(self) -> float:
        return float(self.db.execute("SELECT COALESCE(SUM(cost), 0) FROM responses")
                     .fetchone()[0])

    def frame(self, sql: str, params: tuple = ()):
        import pandas as pd

        cur = self.db.execute(sql, params)
        return pd.DataFrame(cur.fetchall(), columns=[d[0] for d in cur.description])
