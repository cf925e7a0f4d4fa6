"""The store's schema (store.py), and the upgrade of a version-1 store in place."""

from __future__ import annotations

import sqlite3
from pathlib import Path


class StoreError(Exception):
    pass


SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS units (
  unit_id TEXT PRIMARY KEY, transcript_id TEXT NOT NULL, teacher_id TEXT NOT NULL,
  text_sha256 TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS requests (
  key TEXT PRIMARY KEY, rater TEXT NOT NULL, model TEXT NOT NULL, family TEXT NOT NULL,
  strategy TEXT NOT NULL, task TEXT NOT NULL, unit_id TEXT NOT NULL REFERENCES units(unit_id),
  replicate INTEGER NOT NULL, template_version TEXT NOT NULL,
  status TEXT NOT NULL DEFAULT 'pending'
    CHECK (status IN ('pending', 'scored', 'failed', 'batched')),
  attempts INTEGER NOT NULL DEFAULT 0, last_error TEXT, score REAL,
  created_at TEXT NOT NULL, updated_at TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS requests_status ON requests(status);
CREATE TABLE IF NOT EXISTS runs (
  run_id INTEGER PRIMARY KEY, started_at TEXT NOT NULL, finished_at TEXT, status TEXT NOT NULL,
  options TEXT NOT NULL, summary TEXT);
CREATE TABLE IF NOT EXISTS responses (
  id INTEGER PRIMARY KEY, key TEXT NOT NULL REFERENCES requests(key),
  run_id INTEGER NOT NULL REFERENCES runs(run_id), attempt INTEGER NOT NULL,
  outcome TEXT NOT NULL CHECK (outcome IN ('scored', 'parse_failure', 'error', 'duplicate')),
  error_kind TEXT, error TEXT, http_status INTEGER, raw_text TEXT, score REAL,
  parse_status TEXT, tokens_in INTEGER, tokens_out INTEGER, cost REAL, latency_s REAL,
  started_at TEXT NOT NULL, finished_at TEXT NOT NULL, UNIQUE (key, attempt));
CREATE UNIQUE INDEX IF NOT EXISTS one_score_per_key ON responses(key) WHERE outcome = 'scored';
CREATE TABLE IF NOT EXISTS batches (
  batch_row INTEGER PRIMARY KEY, llm TEXT NOT NULL, run_id INTEGER NOT NULL,
  state TEXT NOT NULL CHECK (state IN ('prepared', 'uploaded', 'submitted', 'collected')),
  n_requests INTEGER NOT NULL, input_file_id TEXT, batch_id TEXT, provider_status TEXT,
  request_counts TEXT, output_file_id TEXT, error_file_id TEXT, note TEXT,
  created_at TEXT NOT NULL, updated_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS batch_items (
  batch_row INTEGER NOT NULL REFERENCES batches(batch_row),
  key TEXT NOT NULL REFERENCES requests(key), PRIMARY KEY (batch_row, key));
CREATE INDEX IF NOT EXISTS batch_items_key ON batch_items(key);
"""

# Version 1 → 2: the status and outcome checks widen (SQLite cannot alter a CHECK: the two tables
# are rebuilt in one transaction, rows and row ids kept), and the batch tables are added.
_V1_TO_V2 = [
    "ALTER TABLE requests RENAME TO requests_v1",
    "ALTER TABLE responses RENAME TO responses_v1",
    "DROP INDEX IF EXISTS requests_status",
    "DROP INDEX IF EXISTS one_score_per_key",
    "@SCHEMA",
    "INSERT INTO requests (rowid, key, rater, model, family, strategy, task, unit_id, replicate, "
    "template_version, status, attempts, last_error, score, created_at, updated_at) "
    "SELECT rowid, key, rater, model, family, strategy, task, unit_id, replicate, "
    "template_version, status, attempts, last_error, score, created_at, updated_at "
    "FROM requests_v1",
    "INSERT INTO responses SELECT * FROM responses_v1",
    "DROP TABLE responses_v1",
    "DROP TABLE requests_v1",
    "UPDATE meta SET value = '2' WHERE name = 'schema_version'",
]


def _version(db: sqlite3.Connection) -> str | None:
    row = db.execute("SELECT value FROM meta WHERE name = 'schema_version'").fetchone()
    return row[0] if row else None


def upgrade_v1(db: sqlite3.Connection, path: Path) -> None:
    """Rebuild a version-1 store's tables in place, in one transaction (foreign keys off
    while the tables are swapped, then checked)."""
    db.execute("PRAGMA foreign_keys=OFF")
    db.isolation_level = None
    try:
        db.execute("BEGIN IMMEDIATE")
        try:
            if _version(db) != "1":  # another process upgraded it first
                db.execute("ROLLBACK")
                return
            for stmt in _V1_TO_V2:
                if stmt == "@SCHEMA":
                    for part in SCHEMA.split(";"):
                        if part.strip():
                            db.execute(part)
                else:
                    db.execute(stmt)
            bad = db.execute("PRAGMA foreign_key_check").fetchall()
            if bad:
                raise StoreError(f"{path}: upgrade found {len(bad)} dangling rows")
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
    finally:
        db.isolation_level = ""
        db.execute("PRAGMA foreign_keys=ON")
