"""The batch mode's ledger in the store: which keys went into which batch, and how far each
batch has got, written before and as each step happens so a killed run resumes where it was.

A batch row moves ``prepared`` (its keys chosen and marked ``batched`` in ``requests``, in one
transaction, before anything is uploaded) → ``uploaded`` (the provider's input file id) →
``submitted`` (the provider's batch id) → ``collected`` (every line recorded as an attempt and
every key scored, failed or pending again, in one transaction with the state change). A run
that starts finds the rows not yet collected and carries each on from its state.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass

from .store import Attempt, Store, now

IN_FLIGHT = ("prepared", "uploaded", "submitted")


@dataclass
class BatchRow:
    batch_row: int
    llm: str
    state: str
    n_requests: int
    input_file_id: str | None
    batch_id: str | None
    provider_status: str | None
    request_counts: dict | None
    created_at: str
    updated_at: str


_COLUMNS = ("batch_row, llm, state, n_requests, input_file_id, batch_id, provider_status, "
            "request_counts, created_at, updated_at")


def _row(r: tuple) -> BatchRow:
    return BatchRow(*r[:7], json.loads(r[7]) if r[7] else None, *r[8:])


class BatchLedger:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.db = store.db

    def prepare(self, run_id: int, llm: str, keys: list[str]) -> int:
        """Record the intent: a batch of ``keys`` for ``llm``, its keys marked batched."""
        stamp = now()
        with self.db:
            cur = self.db.execute(
                "INSERT INTO batches (llm, run_id, state, n_requests, created_at, updated_at) "
                "VALUES (?, ?, 'prepared', ?, ?, ?)", (llm, run_id, len(keys), stamp, stamp))
            row = int(cur.lastrowid)
            self.db.executemany("INSERT INTO batch_items VALUES (?, ?)", [(row, k) for k in keys])
            self.db.executemany("UPDATE requests SET status = 'batched', updated_at = ? "
                                "WHERE key = ?", [(stamp, k) for k in keys])
        return row

    def _set(self, batch_row: int, **values: object) -> None:
        cols = ", ".join(f"{k} = ?" for k in values)
        with self.db:
            self.db.execute(f"UPDATE batches SET {cols}, updated_at = ? WHERE batch_row = ?",
                            (*values.values(), now(), batch_row))

    def uploaded(self, batch_row: int, input_file_id: str) -> None:
        self._set(batch_row, state="uploaded", input_file_id=input_file_id)

    def submitted(self, batch_row: int, batch_id: str, status: str | None = None) -> None:
        self._set(batch_row, state="submitted", batch_id=batch_id, provider_status=status)

    def polled(self, batch_row: int, status: str, counts: dict | None) -> None:
        self._set(batch_row, provider_status=status,
                  request_counts=json.dumps(counts) if counts else None)

    def in_flight(self, llm: str | None = None) -> list[BatchRow]:
        marks = ",".join("?" * len(IN_FLIGHT))
        sql = f"SELECT {_COLUMNS} FROM batches WHERE state IN ({marks})"
        args: tuple = IN_FLIGHT
        if llm is not None:
            sql += " AND llm = ?"
            args = (*IN_FLIGHT, llm)
        return [_row(r) for r in self.db.execute(sql + " ORDER BY batch_row", args)]

    def items(self, batch_row: int) -> list[tuple]:
        """The batch's requests as the runner's rows (rowid, key, rater, model, family,
        strategy, task, unit_id, replicate, attempts)."""
        return self.db.execute(
            "SELECT r.rowid, r.key, r.rater, r.model, r.family, r.strategy, r.task, r.unit_id, "
            "r.replicate, r.attempts FROM batch_items b JOIN requests r ON r.key = b.key "
            "WHERE b.batch_row = ? ORDER BY r.rowid", (batch_row,)).fetchall()

    def collect(self, run_id: int, batch_row: int,
                results: Iterable[tuple[Attempt, str | None]], note: str | None = None) -> bool:
        """Every line of a finished batch, in one transaction with the batch's state: each
        (attempt, status after a failure) as ``Store.write_attempt``; keys of the batch still
        marked batched afterwards (no line came back) go back to pending. False, and nothing
        written, when the batch was collected already."""
        stamp = now()
        with self.db:
            done = self.db.execute(
                "UPDATE batches SET state = 'collected', note = ?, updated_at = ? "
                "WHERE batch_row = ? AND state != 'collected'", (note, stamp, batch_row))
            if not done.rowcount:
                return False
            for a, status in results:
                self.store.write_attempt(run_id, a, status)
            self.db.execute(
                "UPDATE requests SET status = 'pending', updated_at = ? WHERE status = 'batched' "
                "AND key IN (SELECT key FROM batch_items WHERE batch_row = ?)", (stamp, batch_row))
        return True

    def release(self, batch_row: int, note: str) -> None:
        """Give a batch's keys back (pending) without a provider batch: it was never created
        (the provider has no batch API, or refused the file)."""
        self.collect(0, batch_row, (), note)
