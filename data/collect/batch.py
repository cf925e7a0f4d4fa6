"""Batch mode: an LLM's pending requests as provider batches (litellm's files and batches calls),
at the batch price, recorded in the store as attempts like live calls.

Per LLM, a round takes the requests still to do, writes the intent (batch_ledger.py) and then
carries each batch on: upload the JSONL (one OpenAI chat request per line, ``custom_id`` = the
request key) → create the batch → poll with backoff → download the output and error files →
record every line in one transaction. Lines that failed (an HTTP error, the batch expired or
failed as a whole) go back to pending and the next round sends them again, up to the study's
``max_attempts`` per request per run; parse failures settle as failed, as in live mode.

Resuming after a kill: every batch not yet collected is carried on from its recorded state. A
batch whose input file was recorded but not its id is looked up among the provider's batches
by that file before a new one is created, so the provider never gets a second batch for the
same requests; if one is ever delivered twice, the store keeps the second answer as a
``duplicate`` (store.py), never as a second score.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import time
from collections import Counter
from dataclasses import dataclass

from .batch_ledger import BatchLedger, BatchRow
from .batch_lines import batch_counts, batch_error, epoch, line_attempt
from .cost import batch_pricing_for
from .limits import backoff, classify
from .modes import provider_of
from .store import Attempt, now

log = logging.getLogger("misalign.collect")
KILL_ENV = "MISALIGN_COLLECT_KILL_AT"  # test instrumentation: "point[:n]" → SIGKILL there
TERMINAL = ("completed", "expired", "failed", "cancelled")
NO_BATCH_API = (404, 405, 501)
MAX_BYTES = 190 * 2**20  # providers take input files up to 200 MB
KEEP_BYTES = 256 * 2**20  # input files kept in memory between the reserve and the upload
_hits: Counter = Counter()


def checkpoint(point: str) -> None:
    """Kill this process with SIGKILL at the n-th pass through ``point`` when the environment
    asks (the crash tests' way to stop a run exactly between two steps)."""
    spec = os.environ.get(KILL_ENV)
    if not spec:
        return
    name, _, n = spec.partition(":")
    if name == point:
        _hits[point] += 1
        if _hits[point] == int(n or 1):
            os.kill(os.getpid(), signal.SIGKILL)


@dataclass
class _LLM:
    name: str
    model: str  # the provider's own model name, as the request lines carry it
    provider: str
    kwargs: dict  # api_base, api_key, custom_llm_provider


class BatchRunner:
    """Batch mode for some of a ``Collector``'s LLMs, within its run."""

    def __init__(self, collector, names: list[str], auto: set[str],
                 carry_only: frozenset = frozenset()) -> None:
        self.c = collector
        self.ledger = BatchLedger(collector.store)
        self.auto = auto  # LLMs in auto mode: one whose provider has no batch API goes live
        self.carry_only = carry_only  # live now, with batches of an earlier run to collect
        self.to_live: list[str] = []
        self.tries: Counter = Counter()  # attempts this run, per key
        self.llms = {}
        for name in names:
            cfg = collector.llms[name]
            model, provider = provider_of(cfg.model)
            self.llms[name] = _LLM(name, model, provider, {
                "custom_llm_provider": provider, "api_base": cfg.api_base,
                "api_key": collector.keys[name]})
        self.prices = {n: batch_pricing_for(collector.llms[n]) for n in names}
        self.states: dict[int, str] = {}  # batch row -> provider status, for the display
        self.payload: dict[int, bytes] = {}  # lines built for the reserve, kept for the upload
        self.reserve: dict[int, float] = {}  # cost reserved for each batch of this run
        self.held: dict[str, str] = {}  # carry-only LLMs whose old batches wait for a rerun

    async def run(self) -> None:
        await asyncio.gather(*(self._llm(n) for n in self.llms))

    # -- rounds ---------------------------------------------------------------------------
    async def _llm(self, name: str) -> None:
        c = self.c
        first = True  # failed requests of earlier runs go into this run's first new batches
        while True:
            flights = self._mine(name)
            if not flights:  # batches already paid for are collected even at the cost cap
                if c.stop_reason or name in c.stopped or name in self.held \
                        or name in self.carry_only or not self._submit(name, first):
                    return
                first = False
                flights = self._mine(name)
            await asyncio.gather(*(self._carry(self.llms[name], f) for f in flights))
            if name in self.to_live or name in c.stopped or name in self.held:
                return

    def _mine(self, name: str) -> list[BatchRow]:
        """The batches of ``name`` not yet collected that this run may carry: some of their
        requests are in this run's plan, and no other live run holds them. Taking one is one
        UPDATE (the store serialises writers), so two processes never carry the same batch
        (e.g. after the shard split changed while batches were in flight)."""
        db, run_id = self.c.store.db, self.c.summary.run_id
        mine = []
        for f in self.ledger.in_flight(name):
            if not db.execute("SELECT 1 FROM batch_items b JOIN plan p ON p.key = b.key "
                              "WHERE b.batch_row = ? LIMIT 1", (f.batch_row,)).fetchone():
                continue
            with db:
                took = db.execute(
                    "UPDATE batches SET run_id = ? WHERE batch_row = ? AND (run_id = ? OR "
                    "run_id NOT IN (SELECT run_id FROM runs WHERE status = 'running'))",
                    (run_id, f.batch_row, run_id)).rowcount
            if took:
                mine.append(f)
        return mine

    def _submit(self, name: str, first: bool) -> bool:
        """Write the intent of this round's batches; False when nothing is left to send."""
        c = self.c
        statuses = ("pending", "failed") if first and c.retry_failed else ("pending",)
        marks = ",".join("?" * len(statuses))
        rows = [r for r in c.store.db.execute(
            f"SELECT r.key, r.strategy, r.task, r.unit_id FROM requests r JOIN plan p "
            f"ON p.key = r.key WHERE r.rater = ? AND r.status IN ({marks}) ORDER BY r.rowid",
            (name, *statuses)) if self.tries[r[0]] < c.study.run.max_attempts]
        if not rows:
            return False
        size = c.study.run.batch_max_requests
        price, cfg = self.prices[name], c.llms[name]
        chunks = [rows[i:i + size] for i in range(0, len(rows), size)]
        while chunks:
            chunk = chunks.pop(0)
            data = self._lines(self.llms[name], chunk)
            if len(data) > MAX_BYTES and len(chunk) > 1:  # the providers' file size limit
                half = len(chunk) // 2
                chunks[:0] = [chunk[:half], chunk[half:]]
                continue
            # The most it can cost: the prompts (≈ 4 characters a token) and max_tokens each.
            reserve = price.cost(len(data) // 4, cfg.max_tokens * len(chunk)) or 0.0
            if c._over_cap(reserve):
                break
            row = self.ledger.prepare(c.summary.run_id, name, [r[0] for r in chunk])
            if sum(map(len, self.payload.values())) + len(data) <= KEEP_BYTES:
                self.payload[row] = data  # else built again at upload: memory stays bounded
            self.reserve[row] = reserve
            c.reserved += reserve
            c.summary.batches["created"] += 1
            log.info("batch %d: %d requests of %s prepared", row, len(chunk), name)
            checkpoint("prepared")
        return True

    # -- one batch ------------------------------------------------------------------------
    async def _carry(self, llm: _LLM, f: BatchRow) -> None:
        if f.state == "prepared":
            fid = await self._call(llm, "upload", f, self._upload, llm, f)
            if fid is None:
                return
            self.ledger.uploaded(f.batch_row, fid)
            f.input_file_id, f.state = fid, "uploaded"
            checkpoint("uploaded")
        if f.state == "uploaded":
            bid = await self._call(llm, "create", f, self._create, llm, f)
            if bid is None:
                return
            self.ledger.submitted(f.batch_row, bid)
            f.batch_id, f.state = bid, "submitted"
            self.c.summary.batches["submitted"] += 1
        await self._poll(llm, f)

    async def _call(self, llm: _LLM, what: str, f: BatchRow, fn, *args):
        """A provider call with the runner's retries; None when it cannot succeed: before the
        batch exists (upload, create) it is released, its requests pending again, and the LLM
        goes live (auto mode, no batch API) or stops; after, the LLM stops for this run and
        the batch waits in the store for the next."""
        runc = self.c.study.run
        for i in range(1, runc.max_attempts + 1):
            try:
                return await fn(*args)
            except Exception as exc:  # every provider error is handled here
                kind, retryable, status = classify(exc)
                msg = self.c.redact(str(exc))[:300]
                if not retryable or i == runc.max_attempts:
                    if what in ("poll", "download") and status == 404:
                        # The provider forgot the batch or its results: send them again (one
                        # try of each request, so a provider that always forgets stops).
                        self._release(f, f"the provider no longer has batch {f.batch_id} or "
                                         f"its results ({what}: {msg})")
                        log.warning("%s: batch %s unknown to the provider; its requests are "
                                    "pending again", llm.name, f.batch_id)
                        return None
                    refused = status is not None and 400 <= status < 500
                    if what not in ("upload", "create") or what == "create" and not refused:
                        # The batch exists, or may (a create that timed out): the next run
                        # resumes it, or finds it by its input file.
                        self._hold(llm, f"batch {f.batch_id or f.batch_row}: {what} failed "
                                        f"({kind}: {msg}); it stays in the store and the next "
                                        "run resumes it")
                        return None
                    no_api = what == "upload" and (status in NO_BATCH_API or kind == "bad_request"
                                                   or "support" in msg.lower())
                    self._release(f, f"{what} failed: {kind}: {msg}")
                    if no_api and llm.name in self.auto:
                        log.warning("%s: no batch API (%s: %s); collecting it live", llm.name,
                                    kind, msg)
                        if llm.name not in self.to_live:
                            self.to_live.append(llm.name)
                    else:
                        self._hold(llm, f"batch {what} failed: {kind}: {msg}")
                    return None
                await asyncio.sleep(backoff(i, runc.backoff_base_s, runc.backoff_max_s,
                                            self.c.rng))
        return None

    def _release(self, f: BatchRow, note: str) -> None:
        """The batch's requests pending again, each charged one try of this run."""
        for row in self.ledger.items(f.batch_row):
            self.tries[row[1]] += 1
        self.ledger.release(f.batch_row, note)
        self.c.reserved -= self.reserve.pop(f.batch_row, 0.0)

    def _hold(self, llm: _LLM, why: str) -> None:
        """No more batches of this LLM this run. An LLM in batch mode stops (as a live one
        would); one collected live now keeps its live requests going."""
        if llm.name in self.carry_only:
            self.held[llm.name] = why
        else:
            self.c.stopped[llm.name] = why
        log.error("%s: %s", llm.name, why)

    def _lines(self, llm: _LLM, rows: list[tuple]) -> bytes:
        """The batch's JSONL: one chat request per (key, strategy, task, unit_id), with the
        same model, parameters and seed as the live call."""
        cfg = self.c.llms[llm.name]
        out = []
        for key, strategy, task, unit_id in rows:
            body = {"model": llm.model, "messages": self.c.messages(unit_id, task, strategy),
                    "temperature": cfg.temperature, "max_tokens": cfg.max_tokens,
                    "seed": int(key[:8], 16) % 2**31}
            out.append(json.dumps({"custom_id": key, "method": "POST",
                                   "url": "/v1/chat/completions", "body": body}))
        return ("\n".join(out) + "\n").encode()

    async def _upload(self, llm: _LLM, f: BatchRow) -> str:
        name = f"misalign-{self.c.store_id}-{f.batch_row}.jsonl"
        data = self.payload.pop(f.batch_row, None)
        if data is None:  # a batch prepared by a run that was killed: the same lines again
            data = self._lines(llm, [(r[1], r[5], r[6], r[7])
                                     for r in self.ledger.items(f.batch_row)])
        obj = await self.c.litellm.acreate_file(file=(name, data), purpose="batch",
                                                **llm.kwargs)
        return obj.id

    async def _create(self, llm: _LLM, f: BatchRow) -> str:
        found = await self._find(llm, f)
        if found:
            log.info("batch %d: found %s on the provider (created before a kill)",
                     f.batch_row, found)
            return found
        obj = await self.c.litellm.acreate_batch(
            completion_window="24h", endpoint="/v1/chat/completions",
            input_file_id=f.input_file_id, metadata={"misalign_batch": str(f.batch_row)},
            **llm.kwargs)
        checkpoint("created")
        return obj.id

    async def _find(self, llm: _LLM, f: BatchRow) -> str | None:
        """The provider's batch made from this batch's input file, if one exists (newest
        first, back to the batch's own creation)."""
        after = None
        since = epoch(f.created_at) - 3600  # the provider's clock may differ from ours
        for _ in range(100):
            page = await self.c.litellm.alist_batches(limit=100, after=after, **llm.kwargs)
            data = list(getattr(page, "data", []) or [])
            for b in data:
                if b.input_file_id == f.input_file_id:
                    return b.id
            oldest = data[-1].created_at if data else None
            if not data or not getattr(page, "has_more", False) or \
                    oldest is not None and oldest < since:
                return None
            after = data[-1].id
        return None

    async def _poll(self, llm: _LLM, f: BatchRow) -> None:
        runc = self.c.study.run
        wait = runc.batch_poll_s
        while True:
            b = await self._call(llm, "poll", f, self._retrieve, llm, f)
            if b is None:
                return
            counts = batch_counts(b)
            self.ledger.polled(f.batch_row, b.status, counts)
            self.states[f.batch_row] = b.status
            self.c._batch_progress(self.states)
            checkpoint("polling")
            if b.status in TERMINAL:
                await self._collect(llm, f, b)
                return
            await asyncio.sleep(wait)
            wait = min(wait * 1.5, runc.batch_poll_max_s)

    async def _retrieve(self, llm: _LLM, f: BatchRow):
        return await self.c.litellm.aretrieve_batch(batch_id=f.batch_id, **llm.kwargs)

    async def _content(self, llm: _LLM, file_id: str | None) -> list[dict]:
        if not file_id:
            return []
        resp = await self.c.litellm.afile_content(file_id=file_id, **llm.kwargs)
        out = []
        for line in resp.content.decode("utf-8", "replace").splitlines():
            if line.strip():
                try:
                    out.append(json.loads(line))
                except json.JSONDecodeError:
                    log.warning("batch file %s: a line that is not JSON was skipped", file_id)
        return out

    async def _collect(self, llm: _LLM, f: BatchRow, b) -> None:
        """Every line of the finished batch into the store, in one transaction."""
        got = []
        for fid in (b.output_file_id, b.error_file_id):
            lines = await self._call(llm, "download", f, self._content, llm, fid)
            if lines is None:
                return
            got += lines
        items = {r[1]: r for r in self.ledger.items(f.batch_row)}
        attempts = {k: r[9] for k, r in items.items()}
        started = f.created_at
        latency = max(0.0, time.time() - epoch(started))
        price, rubrics = self.prices[llm.name], self.c.rubrics
        results, seen = [], set()
        s = self.c.summary
        for line in got:
            key = line.get("custom_id")
            if key not in items:
                log.warning("batch %s: a line for an unknown key %r was skipped", b.id, key)
                continue
            attempts[key] += 1
            seen.add(key)
            rubric = rubrics.get(items[key][6])
            if rubric is None:  # the study dropped this task while the batch was out
                results.append((Attempt(key, attempts[key], "error", True, started, now(),
                                        latency, error_kind="study_changed",
                                        error=f"task {items[key][6]} is no longer in the "
                                              "study"), "failed"))
                continue
            results.append(line_attempt(line, key, attempts[key], rubric, started, latency,
                                        price, self.c.redact))
        why = batch_error(b)
        for key in items.keys() - seen:  # no line came back: the batch failed or expired
            attempts[key] += 1
            results.append((Attempt(key, attempts[key], "error", False, started, now(), latency,
                                    error_kind=f"batch_{b.status}", error=why), None))
        for a, _ in results:
            self.tries[a.key] += 1
            if a.outcome == "error":
                s.errors[a.error_kind] += 1
        final = []
        for a, status in results:
            if a.outcome == "error" and status is None:
                status = "failed" if self.tries[a.key] >= self.c.study.run.max_attempts \
                    else "pending"
            final.append((a, status))
        checkpoint("recording")
        if not self.ledger.collect(s.run_id, f.batch_row, final,
                                   note=f"{b.status}: {len(got)} lines"):
            log.warning("batch %d was collected by another run; nothing recorded", f.batch_row)
            return
        self.c.reserved -= self.reserve.pop(f.batch_row, 0.0)
        for a, status in final:
            s.attempts += 1
            if a.outcome == "error" and status == "failed":
                self.c._settled(failed=True)
            if a.cost:
                s.cost += a.cost
            if a.outcome == "scored":
                s.scored += 1
                self.c._settled(failed=False)
            elif a.outcome == "parse_failure":
                s.parse_failures += 1
                self.c._settled(failed=True)
            elif a.outcome == "duplicate":
                s.batches["duplicate_lines"] += 1
        s.batches[b.status] += 1
        log.info("batch %d (%s) %s: %d lines, %d keys without a line", f.batch_row, b.id,
                 b.status, len(got), len(items) - len(seen))
