"""Batch mode against the test server's files and batches endpoints, over real HTTP through
litellm: faults of every batch kind, SIGKILL at the lifecycle's worst points, resumption, the
batch price, the fallback to live calls, shards, ``--status``, and the store's upgrade."""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time

import pandas as pd
import pytest

from misalign.data.collect import Attempt, Store, collect, read_study, read_units
from misalign.data.collect.batch import KILL_ENV
from misalign.data.collect.testserver import RunningServer
from tests.collect_support import PLANTED_KEY, cli, count, write_study, write_units

PRICES = ("input_cost_per_token = 2e-6\noutput_cost_per_token = 8e-6\n"
          "batch_input_cost_per_token = 1e-6\nbatch_output_cost_per_token = 4e-6")
FAST = {"batch_poll_s": 0.05, "batch_poll_max_s": 0.3, "max_attempts": 6,
        "backoff_base_s": 0.02, "backoff_max_s": 0.2}
ENV = {"OPENAI_API_KEY": PLANTED_KEY, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}


@pytest.fixture(autouse=True)
def planted_key(monkeypatch):
    for k, v in ENV.items():
        monkeypatch.setenv(k, v)


def _proc(study, store, *args, kill_at: str | None = None) -> subprocess.Popen:
    env = os.environ | ENV
    env.pop(KILL_ENV, None)
    if kill_at:
        env[KILL_ENV] = kill_at
    return subprocess.Popen([sys.executable, "-m", "misalign.cli", "collect", str(study),
                             "--store", str(store), "--no-progress", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _ratings(store, tmp_path, name) -> pd.DataFrame:
    out = tmp_path / f"{name}.csv"
    r = cli("export", *([str(s) for s in store] if isinstance(store, list) else [str(store)]),
            "--out", str(out), env=ENV)
    assert r.returncode == 0, r.stderr
    cols = ["unit_id", "task", "rater", "prompt", "replicate"]
    return pd.read_csv(out).sort_values(cols).reset_index(drop=True)


def _poll_state(store, sql: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if store.exists() and count(store, sql) > 0:
                return
        except sqlite3.OperationalError:
            pass
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for: {sql}")


def _killed_batch_study(tmp_path, n_units: int, per_batch: int, seed: int) -> dict:
    """Batch mode through three SIGKILLs (between upload and batch creation, after a batch was
    created but before its id was recorded, and at a random moment of polling), then a run
    that finishes; and the same study live against a fault-free server."""
    rng = random.Random(seed)
    write_units(tmp_path / "units.csv", n_units, seed=seed)
    store = tmp_path / "batch.sqlite"
    with RunningServer(batch_delay_s=0.6, batch_line_fault_rate=0.1,
                       faults=("500", "429", "timeout"), expire_batches=(2,),
                       fail_batches=(4,), seed=seed) as server:
        study = write_study(tmp_path / "study.toml", server.api_base, extra_llm=PRICES,
                            run=FAST | {"batch_max_requests": per_batch})
        runs = []
        p = _proc(study, store, "--mode", "batch", kill_at=f"uploaded:{rng.randint(1, 3)}")
        runs.append(p.wait(timeout=300))
        p = _proc(study, store, "--mode", "batch", kill_at=f"created:{rng.randint(1, 2)}")
        runs.append(p.wait(timeout=300))
        p = _proc(study, store, "--mode", "batch")
        _poll_state(store, "SELECT COUNT(*) FROM batches WHERE provider_status = 'in_progress'")
        time.sleep(rng.uniform(0.0, 0.4))
        p.send_signal(signal.SIGKILL)
        runs.append(p.wait(timeout=60))
        with sqlite3.connect(store) as db:
            assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        status = cli("collect", str(study), "--store", str(store), "--status", env=ENV)
        last = _proc(study, store, "--mode", "batch", "--json")
        out, err = last.communicate(timeout=600)
        runs.append(last.returncode)
        stats = server.stats()
    live_store = tmp_path / "live.sqlite"
    with RunningServer(seed=seed) as clean:
        live_study = write_study(tmp_path / "live.toml", clean.api_base, extra_llm=PRICES,
                                 run=FAST)
        st = read_study(live_study)
        with Store(live_store) as s:
            assert collect(st, read_units(st.units), s, mode="live").status == "complete"
    return {"store": store, "live": live_store, "runs": runs, "stats": stats,
            "summary": json.loads(out) if out.strip() else None, "err": err,
            "status": status, "study": study}


def _check_killed_batch_study(r: dict, tmp_path, n_requests: int) -> None:
    store = r["store"]
    assert r["runs"][:3] == [-signal.SIGKILL] * 3, r["runs"]
    assert r["runs"][3] == 0, r["err"][-3000:]
    # The final export equals the live run's, request for request.
    batch, live = _ratings(store, tmp_path, "batch"), _ratings(r["live"], tmp_path, "live")
    assert len(batch) == n_requests
    pd.testing.assert_frame_equal(batch, live)
    # Nothing scored twice, no duplicate answers, no batch created twice for the same
    # requests (the server's own log), and every kind of batch fault happened.
    assert count(store, "SELECT COUNT(*) FROM (SELECT key FROM responses WHERE outcome = "
                        "'scored' GROUP BY key HAVING COUNT(*) > 1)") == 0
    assert count(store, "SELECT COUNT(*) FROM responses WHERE outcome = 'duplicate'") == 0
    stats = r["stats"]
    assert stats.get("resubmitted_while_pending", 0) == 0, stats
    assert stats.get("resubmitted_after_success", 0) == 0, stats
    assert stats["batches_expired"] == 1 and stats["batches_failed"] == 1, stats
    assert count(store, "SELECT COUNT(DISTINCT batch_id) FROM batches") == \
        stats["batches_created"]
    kinds = {k for (k,) in sqlite3.connect(store).execute(
        "SELECT DISTINCT error_kind FROM responses WHERE outcome = 'error'")}
    assert {"batch_expired", "batch_failed", "server_error", "rate_limit"} <= kinds, kinds
    # The batch price: every response's cost is its tokens at the study's batch price.
    db = sqlite3.connect(store)
    got, want = db.execute("SELECT SUM(cost), SUM(tokens_in * 1e-6 + tokens_out * 4e-6) FROM "
                           "responses WHERE cost IS NOT NULL").fetchone()
    assert got == pytest.approx(want, rel=1e-9) and got > 0
    live_cost = sqlite3.connect(r["live"]).execute(
        "SELECT SUM(cost), SUM(tokens_in * 2e-6 + tokens_out * 8e-6) FROM responses").fetchone()
    assert live_cost[0] == pytest.approx(live_cost[1], rel=1e-9)
    assert "batches in flight" in r["status"].stdout, r["status"].stdout


def test_batch_mode_through_three_kills_equals_a_live_run(tmp_path):
    # 100 units × 2 tasks × 2 strategies × 3 LLMs = 1,200 requests, 150 per batch.
    seed = random.randrange(10**6)
    r = _killed_batch_study(tmp_path, 100, 150, seed)
    _check_killed_batch_study(r, tmp_path, 1_200)


@pytest.mark.slow
def test_batch_mode_at_20000_requests_through_three_kills_equals_a_live_run(tmp_path):
    # 1,667 units × 12 = 20,004 requests, 1,000 per batch.
    seed = random.randrange(10**6)
    r = _killed_batch_study(tmp_path, 1_667, 1_000, seed)
    _check_killed_batch_study(r, tmp_path, 20_004)


def test_a_kill_while_recording_a_batch_loses_and_repeats_nothing(tmp_path):
    write_units(tmp_path / "units.csv", 20)
    store = tmp_path / "s.sqlite"
    with RunningServer(batch_delay_s=0.2, seed=1) as server:
        study = write_study(tmp_path / "study.toml", server.api_base, run=FAST)
        assert _proc(study, store, "--mode", "batch", kill_at="recording:2").wait(60) == -9
        # The first batch's lines are in; the second's are not, and its batch waits.
        assert count(store, "SELECT COUNT(*) FROM batches WHERE state = 'submitted'") >= 1
        p = _proc(study, store, "--mode", "batch")
        assert p.wait(120) == 0, p.communicate()[1][-2000:]
        stats = server.stats()
    assert count(store, "SELECT COUNT(*) FROM requests WHERE status = 'scored'") == 240
    assert count(store, "SELECT COUNT(*) FROM responses") == 240
    assert stats.get("resubmitted_while_pending", 0) == 0
    assert stats["batches_created"] == 3  # one per LLM, none again after the kill
    # The key went to the provider in headers only: never into the store or the log.
    for path in (store, store.with_suffix(".log")):
        assert PLANTED_KEY.encode() not in path.read_bytes()


def test_runs_at_once_on_one_store_must_be_disjoint_shards(tmp_path):
    from misalign.data.collect import StoreError

    with Store(tmp_path / "s.sqlite") as s:
        s.begin_run({"pid": os.getpid(), "shard": "1/2"})
        s.begin_run({"pid": os.getpid(), "shard": "2/2"})
        for clash in ({"shard": "2/2"}, {"shard": "1/3"}, {}):
            with pytest.raises(StoreError, match="collecting shard"):
                s.begin_run({"pid": os.getpid()} | clash)


def test_auto_mode_falls_back_to_live_calls_without_a_batch_api(tmp_path):
    write_units(tmp_path / "units.csv", 10)
    with RunningServer(batch_api=False, seed=2) as server:
        study = write_study(tmp_path / "study.toml", server.api_base, run=FAST)
        st = read_study(study)
        with Store(tmp_path / "s.sqlite") as s:
            summary = collect(st, read_units(st.units), s, mode="auto")
        stats = server.stats()
    assert summary.status == "complete" and summary.scored == 120
    assert set(summary.modes.values()) == {"live (no batch API)"}
    assert stats["answered"] == 120 and "batches_created" not in stats


def test_batch_mode_is_refused_for_a_provider_without_a_batch_api(tmp_path):
    write_units(tmp_path / "units.csv", 3)
    study = write_study(tmp_path / "study.toml", "http://127.0.0.1:9/v1",
                        llms=(("local", "ollama/llama3", "f1"),))
    r = cli("collect", str(study), "--store", str(tmp_path / "s.sqlite"), "--mode", "batch",
            env=ENV)
    assert r.returncode != 0 and "has no batch API" in r.stderr, r.stderr


def test_dry_run_prices_each_llm_live_and_in_batch(tmp_path):
    write_units(tmp_path / "units.csv", 10)
    study = write_study(tmp_path / "study.toml", "http://127.0.0.1:9/v1", extra_llm=PRICES)
    live = cli("collect", str(study), "--dry-run", "--mode", "live", env=ENV | {"COLUMNS": "250"})
    batch = cli("collect", str(study), "--dry-run", "--mode", "batch",
                env=ENV | {"COLUMNS": "250"})
    assert live.returncode == 0 and batch.returncode == 0, live.stderr + batch.stderr
    assert "study file (batch)" in batch.stdout and "batch" in live.stdout

    def total(text: str) -> float:
        line = next(x for x in text.splitlines() if x.startswith("total $"))
        return float(line.split()[1].lstrip("$").replace(",", ""))

    assert total(batch.stdout) == pytest.approx(total(live.stdout) / 2, rel=0.01)
    half = cli("collect", str(study), "--dry-run", "--mode", "live", "--shard", "1/2",
               env=ENV | {"COLUMNS": "250"})
    assert half.returncode == 0, half.stderr
    assert 0.3 < total(half.stdout) / total(live.stdout) < 0.7  # one shard of two


def test_two_shards_at_once_equal_one_process(tmp_path):
    write_units(tmp_path / "units.csv", 40)  # 480 requests
    with RunningServer(latency_ms=5, fault_rate=0.05, faults=("500", "429"), seed=4) as server:
        study = write_study(tmp_path / "study.toml", server.api_base, run=FAST)
        one = _proc(study, tmp_path / "one.sqlite")
        assert one.wait(120) == 0
        # Two processes on one store, and two on their own stores, each pair at once.
        pair = [_proc(study, tmp_path / "shared.sqlite", "--shard", f"{i}/2") for i in (1, 2)]
        apart = [_proc(study, tmp_path / f"part{i}.sqlite", "--shard", f"{i}/2")
                 for i in (1, 2)]
        for p in pair + apart:
            assert p.wait(120) == 0, p.communicate()[1][-2000:]
    ref = _ratings(tmp_path / "one.sqlite", tmp_path, "one")
    assert len(ref) == 480
    pd.testing.assert_frame_equal(_ratings(tmp_path / "shared.sqlite", tmp_path, "shared"), ref)
    merged = _ratings([tmp_path / "part1.sqlite", tmp_path / "part2.sqlite"], tmp_path, "merged")
    pd.testing.assert_frame_equal(merged, ref)
    n1 = count(tmp_path / "part1.sqlite", "SELECT COUNT(*) FROM requests")
    n2 = count(tmp_path / "part2.sqlite", "SELECT COUNT(*) FROM requests")
    assert n1 + n2 == 480 and min(n1, n2) > 150  # disjoint halves, about even


def test_a_version_1_store_is_upgraded_in_place(tmp_path):
    path = tmp_path / "old.sqlite"
    with Store(path) as s:
        s.sync_units([("u1", "t1", "te1", "d")])
        s.sync_plan([("k1", "r", "m", "f", "base", "CLPC", "u1", 1, "v1")])
        run = s.begin_run({})
        s.record(run, Attempt("k1", 1, "scored", True, "a", "b", 0.1, score=3.0))
    db = sqlite3.connect(path)  # rewrite it as version 1 wrote it: the narrower checks
    db.executescript("""
        PRAGMA foreign_keys=OFF;
        DROP TABLE batch_items; DROP TABLE batches;
        CREATE TABLE r1 AS SELECT * FROM requests; DROP TABLE requests;
        CREATE TABLE requests (
          key TEXT PRIMARY KEY, rater TEXT NOT NULL, model TEXT NOT NULL, family TEXT NOT NULL,
          strategy TEXT NOT NULL, task TEXT NOT NULL, unit_id TEXT NOT NULL,
          replicate INTEGER NOT NULL, template_version TEXT NOT NULL,
          status TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending','scored','failed')),
          attempts INTEGER NOT NULL DEFAULT 0, last_error TEXT, score REAL,
          created_at TEXT NOT NULL, updated_at TEXT NOT NULL);
        INSERT INTO requests SELECT * FROM r1; DROP TABLE r1;
        UPDATE meta SET value = '1' WHERE name = 'schema_version';""")
    db.commit()
    db.close()
    with Store(path, readonly=True) as s:  # read as it is
        assert s.counts()["scored"] == 1
    with Store(path) as s:
        assert s.meta("schema_version") == "2"
        assert s.counts() == {"pending": 0, "scored": 1, "failed": 0, "batched": 0}
        # The upgraded store takes what version 2 adds: a duplicate answer is kept as one.
        s.record(run, Attempt("k1", 2, "scored", True, "a", "b", 0.1, score=5.0))
        assert s.db.execute("SELECT outcome FROM responses WHERE attempt = 2").fetchone()[0] \
            == "duplicate"
        assert s.db.execute("SELECT score FROM requests").fetchone()[0] == 3.0


def test_the_cost_cap_holds_a_batch_back_before_it_is_created(tmp_path):
    write_units(tmp_path / "units.csv", 10)  # 40 requests per LLM
    with RunningServer(batch_delay_s=0.1, seed=3) as server:
        # Each LLM's batch reserves its prompts and 512 output tokens a line at the batch
        # price (0.10–0.15 USD); a cap of 0.15 lets the first batch through and no other.
        study = write_study(tmp_path / "study.toml", server.api_base, extra_llm=PRICES,
                            run=FAST | {"concurrency": 1}, cost_cap=0.15)
        st = read_study(study)
        with Store(tmp_path / "s.sqlite") as s:
            summary = collect(st, read_units(st.units), s, mode="batch")
        stats = server.stats()
    assert summary.status == "cost_cap"
    assert stats["batches_created"] == 1 and summary.scored == 40
    assert 0 < summary.spent_total <= 0.15


def test_a_batch_the_provider_forgot_is_sent_again(tmp_path):
    write_units(tmp_path / "units.csv", 10)
    with RunningServer(batch_delay_s=0.1, forget_batches=(1,), seed=5) as server:
        study = write_study(tmp_path / "study.toml", server.api_base, run=FAST)
        st = read_study(study)
        with Store(tmp_path / "s.sqlite") as s:
            summary = collect(st, read_units(st.units), s, mode="batch")
            notes = [n for (n,) in s.db.execute("SELECT note FROM batches")]
        stats = server.stats()
    assert summary.status == "complete" and summary.scored == 120
    assert stats["batches_created"] == 4  # three, and the forgotten one again
    assert sum("no longer has batch" in (n or "") for n in notes) == 1


def test_a_changed_shard_split_never_carries_one_batch_twice(tmp_path):
    write_units(tmp_path / "units.csv", 10)  # 120 requests, 2 batches of 20 per LLM
    store = tmp_path / "s.sqlite"
    with RunningServer(batch_delay_s=0.2, seed=6) as server:
        study = write_study(tmp_path / "study.toml", server.api_base,
                            run=FAST | {"batch_max_requests": 20})
        # Killed unsharded with batches prepared and uploaded, then resumed as two shards.
        assert _proc(study, store, "--mode", "batch", kill_at="uploaded:2").wait(60) == -9
        pair = [_proc(study, store, "--mode", "batch", "--shard", f"{i}/2") for i in (1, 2)]
        # A shard whose requests sit in a batch the other shard carries ends incomplete (4).
        for p in pair:
            assert p.wait(180) in (0, 4), p.communicate()[1][-2000:]
        created = server.stats()["batches_created"]
        last = _proc(study, store, "--mode", "batch")
        assert last.wait(120) == 0, last.communicate()[1][-2000:]
        stats = server.stats()
    assert stats["batches_created"] == created  # everything was collected by the shards
    assert count(store, "SELECT COUNT(*) FROM requests WHERE status = 'scored'") == 120
    assert count(store, "SELECT COUNT(*) FROM responses") == 120
    assert stats.get("resubmitted_while_pending", 0) == 0
    assert stats.get("resubmitted_after_success", 0) == 0
    assert count(store, "SELECT COUNT(*) FROM batches WHERE state != 'collected'") == 0


def test_any_answer_for_a_scored_key_is_a_duplicate(tmp_path):
    with Store(tmp_path / "s.sqlite") as s:
        s.sync_units([("u1", "t1", "te1", "d")])
        s.sync_plan([("k1", "r", "m", "f", "base", "CLPC", "u1", 1, "v1")])
        run = s.begin_run({"pid": os.getpid()})
        s.record(run, Attempt("k1", 1, "scored", True, "a", "b", 0.1, score=3.0))
        with s.db:  # an error line and a parse failure for it, as a batch might send
            s.write_attempt(run, Attempt("k1", 2, "error", False, "a", "b", 0.1,
                                         error_kind="server_error"), "pending")
            s.write_attempt(run, Attempt("k1", 3, "parse_failure", True, "a", "b", 0.1))
        assert s.db.execute("SELECT status, score, attempts FROM requests").fetchone() == \
            ("scored", 3.0, 3)
        assert [o for (o,) in s.db.execute("SELECT outcome FROM responses ORDER BY attempt")] \
            == ["scored", "duplicate", "duplicate"]
