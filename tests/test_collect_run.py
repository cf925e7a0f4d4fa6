"""Collection against the local test server over real HTTP through litellm: faults, retries,
counts that add up, the cost cap, rate limits and resumption after SIGKILL."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from misalign.data.collect import Store, collect, read_study, read_units
from misalign.data.collect.limits import TokenBucket, retry_after
from misalign.data.collect.testserver import FAULT_KINDS, RunningServer
from tests.collect_support import (
    PLANTED_KEY,
    count,
    scored_table,
    write_study,
    write_units,
)

KNOWN_REASONS = {"rate_limit", "server_error", "timeout", "auth", "connection", "parse_no_score",
                 "parse_out_of_scale", "parse_conflict", "parse_not_final"}


@pytest.fixture(autouse=True)
def planted_key(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", PLANTED_KEY)
    monkeypatch.setenv("LITELLM_LOCAL_MODEL_COST_MAP", "True")


def _run(tmp_path, study, **kw):
    st = read_study(study)
    with Store(tmp_path / "store.sqlite") as s:
        return collect(st, read_units(st.units), s, log_path=str(tmp_path / "store.log"), **kw)


def test_faults_of_every_kind_counts_add_up_and_a_rerun_retries_failures(tmp_path):
    # 50 units × 2 tasks × 2 strategies × 5 LLMs × 2 replicates = 2,000 ratings.
    write_units(tmp_path / "units.csv", 50)
    llms = [(f"mock-{c}", f"openai/mock-{c}", "f1" if c in "ab" else "f2") for c in "abcde"]
    with RunningServer(latency_ms=5, fault_rate=0.2, faults=FAULT_KINDS, hang_s=1.0, seed=3,
                       expected_key=PLANTED_KEY) as server:
        study = write_study(tmp_path / "study.toml", server.api_base, llms=llms, replicates=2,
                            run={"concurrency": 64, "timeout_s": 0.6})
        first = _run(tmp_path, study)
        stats1 = server.stats()
        second = _run(tmp_path, study)
        stats2 = server.stats()
    db = tmp_path / "store.sqlite"
    # Every fault kind was injected, and every attempt is one stored response. The server saw
    # each attempt, except those the client gave up on (timeouts) before the server read them.
    assert {f"fault:{k}" for k in FAULT_KINDS} <= set(stats1)
    assert first.attempts == count(db, "SELECT COUNT(*) FROM responses WHERE run_id = 1")
    for s, seen in ((first, stats1["requests"]),
                    (second, stats2["requests"] - stats1["requests"])):
        assert 0 <= s.attempts - seen <= s.errors["timeout"] + s.errors["connection"]
    # Run 1: each of the 2,000 requests is scored or failed with a reason; nothing pending.
    assert first.planned == first.todo_at_start == 2000
    assert first.scored + first.failed == 2000
    assert first.failed > 0 and first.parse_failures > 0
    c1 = first.store_counts
    assert c1 == {"pending": 0, "scored": first.scored, "failed": first.failed, "batched": 0}
    assert sum(first.failure_reasons.values()) == first.failed
    assert set(first.failure_reasons) <= KNOWN_REASONS
    # Run 2 retries exactly the failures, and the totals still add up.
    assert second.todo_at_start == first.failed
    assert second.scored + second.failed == first.failed
    assert second.store_counts["scored"] == first.scored + second.scored
    assert second.store_counts["failed"] == second.failed
    assert count(db, "SELECT COUNT(*) FROM requests") == 2000
    assert count(db, "SELECT COUNT(*) FROM responses") == first.attempts + second.attempts
    assert count(db, "SELECT SUM(attempts) FROM requests") == first.attempts + second.attempts
    assert count(db, "SELECT COUNT(*) FROM responses WHERE outcome = 'scored'") == \
        second.store_counts["scored"]
    assert count(db, "SELECT COUNT(*) FROM requests WHERE status = 'failed' AND "
                     "(last_error IS NULL OR last_error = '')") == 0
    # Parse failures keep the raw answer; nothing was guessed.
    assert count(db, "SELECT COUNT(*) FROM responses WHERE outcome = 'parse_failure' AND "
                     "(raw_text IS NULL OR score IS NOT NULL)") == 0


def test_cost_cap_stops_new_requests_cleanly(tmp_path):
    write_units(tmp_path / "units.csv", 40)
    with RunningServer(latency_ms=5) as server:
        # gpt-4o-mini is in litellm's cost map, so the test server's answers have a price.
        study = write_study(tmp_path / "study.toml", server.api_base,
                            llms=[("mini", "openai/gpt-4o-mini", "openai")], cost_cap=0.002,
                            run={"concurrency": 4})
        s = _run(tmp_path, study)
    assert s.status == "cost_cap"
    assert 0 < s.scored < 160
    assert s.store_counts["pending"] == 160 - s.scored - s.failed
    assert s.spent_total <= 0.002
    assert s.spent_total == pytest.approx(s.cost)


def test_unknown_model_cost_is_null_not_a_crash(tmp_path):
    write_units(tmp_path / "units.csv", 3)
    with RunningServer() as server:
        s = _run(tmp_path, write_study(tmp_path / "study.toml", server.api_base))
    assert s.status == "complete" and s.unpriced == ["mock-a", "mock-b", "mock-c"]
    assert count(tmp_path / "store.sqlite", "SELECT COUNT(*) FROM responses WHERE cost IS NOT "
                                            "NULL") == 0


def test_retry_after_headers():
    class E(Exception):
        def __init__(self, h):
            self.litellm_response_headers = h

    assert retry_after(E({"retry-after-ms": "250", "retry-after": "9"})) == 0.25
    assert retry_after(E({"retry-after": "3"})) == 3.0
    later = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 30))
    assert 25 < retry_after(E({"retry-after": later})) <= 31
    assert retry_after(E({})) is None


def test_rate_limit_bucket_holds_the_rate():
    async def go():
        bucket = TokenBucket(per_minute=1200)  # 20 per second, burst of 20
        t0 = time.monotonic()
        for _ in range(50):
            await bucket.take()
        return time.monotonic() - t0

    # 50 requests at 20/s with a burst of 20 cannot finish in less than 1.5 s.
    assert asyncio.run(go()) >= 1.4


def test_changed_unit_text_is_refused(tmp_path):
    write_units(tmp_path / "units.csv", 3)
    with RunningServer() as server:
        study = write_study(tmp_path / "study.toml", server.api_base)
        _run(tmp_path, study)
        write_units(tmp_path / "units.csv", 3, seed=9)
        from misalign.data.collect import CollectError

        with pytest.raises(CollectError, match="different text"):
            _run(tmp_path, study)


def _cli_proc(study, store, env):
    return subprocess.Popen([sys.executable, "-m", "misalign.cli", "collect", str(study),
                             "--store", str(store), "--no-progress"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def test_sigkill_at_three_random_points_then_resume_equals_uninterrupted(tmp_path):
    write_units(tmp_path / "units.csv", 30)  # 30 × 2 tasks × 2 strategies × 3 LLMs = 360
    env = os.environ | {"LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    seed = random.randrange(10**6)
    rng = random.Random(seed)
    points = sorted(rng.sample(range(20, 340), 3))
    with RunningServer(latency_ms=20, fault_rate=0.1, faults=("429", "500", "truncated"),
                       seed=seed) as server:
        study = write_study(tmp_path / "study.toml", server.api_base,
                            run={"concurrency": 16, "max_attempts": 12})
        ref = tmp_path / "reference.sqlite"
        st = read_study(study)
        with Store(ref) as s:  # the uninterrupted run, in this process
            assert collect(st, read_units(st.units), s).status == "complete"
        store = tmp_path / "killed.sqlite"
        seen = []
        for point in points:
            proc = _cli_proc(study, store, env)
            deadline = time.monotonic() + 120
            n = 0
            while time.monotonic() < deadline and proc.poll() is None:
                if store.exists():
                    try:
                        n = count(store, "SELECT COUNT(*) FROM requests WHERE status = 'scored'")
                    except sqlite3.OperationalError:
                        n = 0
                    if n >= point:
                        break
                time.sleep(0.02)
            assert proc.poll() is None, f"finished before the kill point {point} (seed {seed})"
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            seen.append(n)
            with sqlite3.connect(store) as db:
                assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert _cli_proc(study, store, env).wait(timeout=300) == 0
    assert seen == sorted(seen), seen
    assert scored_table(store) == scored_table(ref), f"seed {seed}, kills at {seen}"
    assert len(scored_table(store)) == 360
    assert count(store, "SELECT COUNT(*) FROM responses WHERE outcome = 'scored'") == 360
    assert count(store, "SELECT COUNT(*) FROM (SELECT key FROM responses WHERE outcome = "
                        "'scored' GROUP BY key HAVING COUNT(*) > 1)") == 0
