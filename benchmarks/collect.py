"""Collection throughput: misalign's runner + store against plain ``litellm.acompletion``, batch
mode, and 1, 2 and 4 shards in parallel processes.

    python benchmarks/collect.py            # 3,000 ratings × 3 repeats of each variant
    python benchmarks/collect.py --quick    # 600 ratings × 2
    python benchmarks/collect.py --rows batch,shards

Both variants send the same prompts to the local test server (``misalign.data.collect.
testserver``, in its own process) at the same latency (100 ms) and concurrency (64), through
litellm over real HTTP, in this one process, alternating so that load drifts hit both:
- ``plain``: prompts built beforehand, then ``asyncio.gather`` over ``litellm.acompletion``
  under a semaphore; the answer text is read and nothing else.
- ``misalign``: ``Collector.run`` on a fresh SQLite store: plan and unit sync, prompt building
  (incl. BM25 retrieval for ``rag``), rate limiter, retry wrapper, parsing, cost, one
  transaction per rating.
- ``batch``: the same study in batch mode (``Collector(mode="batch")``, 4 batches per LLM)
  against the server's batch endpoints with a completion delay (``--batch-delay-s``): the wall
  time is mostly the provider's delay; the CPU is the client's (JSONL, upload, polling,
  download, parsing, recording).
- ``shards k``: k ``misalign collect --shard i/k`` processes at once on one store (live mode);
  CPU is the children's (``RUSAGE_CHILDREN``), including each process's start (imports).
Reported per variant (median over repeats): wall seconds, ratings/s and CPU ms per rating
(process CPU time, all threads); the ratio column is each variant / plain. The layer's budget
is +15 % CPU per rating.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("OPENAI_API_KEY", "sk-benchmark-not-a-real-key")
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from misalign.data.collect import (  # noqa: E402
    Collector,
    PromptBuilder,
    Store,
    iter_plan,
    read_study,
    read_units,
)
from misalign.data.collect.testserver import RunningServer  # noqa: E402
from tests.collect_support import write_study, write_units  # noqa: E402


def plain(litellm, jobs: list[tuple[str, list[dict]]], api_base: str, concurrency: int) -> None:
    sem = asyncio.Semaphore(concurrency)

    async def one(model: str, messages: list[dict]) -> str | None:
        async with sem:
            r = await litellm.acompletion(model=model, messages=messages, api_base=api_base,
                                          temperature=0.0, max_tokens=512, timeout=60,
                                          num_retries=0, max_retries=0, drop_params=True)
            return r.choices[0].message.content

    async def run() -> None:
        await asyncio.gather(*(one(m, msg) for m, msg in jobs))

    asyncio.run(run())


def measure(fn) -> tuple[float, float]:
    w, c = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - w, time.process_time() - c


def children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def shards(study_path: Path, tmp: Path, k: int, rep: int, n: int) -> tuple[float, float]:
    """k processes on one store at once; (wall, children's CPU)."""
    store = tmp / f"shards{k}-{rep}.sqlite"
    env = os.environ | {"LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    w, c = time.perf_counter(), children_cpu()
    procs = [subprocess.Popen([sys.executable, "-m", "misalign.cli", "collect", str(study_path),
                               "--store", str(store), "--no-progress", "--shard", f"{i}/{k}"],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              text=True) for i in range(1, k + 1)]
    for p in procs:
        _, err = p.communicate()
        assert p.returncode == 0, err[-2000:]
    wall, cpu = time.perf_counter() - w, children_cpu() - c
    with Store(store) as s:
        assert s.counts()["scored"] == n, s.counts()
    return wall, cpu


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--units", type=int, default=None, help="units (× 12 ratings each)")
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument("--latency-ms", type=float, default=100.0)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--batch-delay-s", type=float, default=5.0)
    ap.add_argument("--rows", default="live,batch,shards",
                    help="comma-separated subset of live (plain and misalign), batch, shards")
    a = ap.parse_args(argv)
    which = set(a.rows.split(","))
    n_units = a.units or (50 if a.quick else 250)
    repeats = a.repeats or (2 if a.quick else 3)
    import litellm

    litellm.suppress_debug_info = True
    tmp = Path(tempfile.mkdtemp(prefix="misalign-bench-collect-"))
    write_units(tmp / "units.csv", n_units)
    rows = []
    with RunningServer(latency_ms=a.latency_ms, batch_delay_s=a.batch_delay_s) as server:
        # 2 tasks × 3 strategies × 2 LLMs × 1 replicate = 12 ratings per unit.
        study_path = write_study(tmp / "study.toml", server.api_base,
                                 strategies=("base", "cot", "rag"),
                                 llms=(("mock-a", "openai/mock-a", "f1"),
                                       ("mock-b", "openai/mock-b", "f1")),
                                 run={"concurrency": a.concurrency, "timeout_s": 60.0,
                                      "batch_poll_s": 0.5, "batch_poll_max_s": 2.0,
                                      "batch_max_requests": -(-n_units * 6 // 4)})
        study = read_study(study_path)
        units = read_units(study.units)
        text = units.text_of()
        rubrics = {r.task: r for r in study.tasks}
        builder = PromptBuilder(study.rag)
        models = {m.name: m.model for m in study.llms}
        jobs = [(models[r[1]], builder.messages(text[r[6]], rubrics[r[5]], r[4]))
                for r in iter_plan(study, units)]
        n = len(jobs)
        plain(litellm, jobs[:200], server.api_base, a.concurrency)  # warm litellm's imports
        results: dict[str, list[tuple[float, float]]] = {"plain": []}
        for rep in range(repeats):
            results["plain"].append(measure(
                lambda: plain(litellm, jobs, server.api_base, a.concurrency)))
            for mode in ("live", "batch"):
                if mode not in which:
                    continue

                def ours(rep=rep, mode=mode) -> None:
                    with Store(tmp / f"store-{mode}-{rep}.sqlite") as s:
                        summary = Collector(study, units, s, mode=mode).run()
                    assert summary.scored == n, summary.to_dict()

                name = "misalign" if mode == "live" else f"misalign batch ({a.batch_delay_s:g} s)"
                results.setdefault(name, []).append(measure(ours))
            if "shards" in which:
                for k in (1, 2, 4):
                    results.setdefault(f"shards {k} (processes)", []).append(
                        shards(study_path, tmp, k, rep, n))
            print(f"repeat {rep + 1}/{repeats}: " + ", ".join(
                f"{k} {v[-1][0]:.1f} s" for k, v in results.items()), file=sys.stderr)
    base_cpu = statistics.median(c for _, c in results["plain"]) / n * 1000
    for name, vals in results.items():
        wall = statistics.median(w for w, _ in vals)
        cpu = statistics.median(c for _, c in vals) / n * 1000
        rows.append({"variant": name, "ratings": n, "repeats": repeats, "wall_s": round(wall, 2),
                     "ratings_per_s": round(n / wall, 1), "cpu_ms_per_rating": round(cpu, 3),
                     "cpu_ratio": round(cpu / base_cpu, 3),
                     "cpu_ms_each": [round(c / n * 1000, 3) for _, c in vals]})
    head = ("| variant | ratings | wall s | ratings/s | CPU ms/rating | CPU ratio |\n"
            "|---|---:|---:|---:|---:|---:|")
    print(f"\ncollection at {a.latency_ms:g} ms latency, concurrency {a.concurrency}, "
          f"median of {repeats} ({platform.node()}, {os.cpu_count()} CPUs)\n{head}")
    for r in rows:
        print(f"| {r['variant']} | {r['ratings']:,} | {r['wall_s']} | {r['ratings_per_s']} | "
              f"{r['cpu_ms_per_rating']} | {r['cpu_ratio']} |")
    out = HERE / "results" / f"collect{'-quick' if a.quick else ''}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"when": datetime.now(UTC).isoformat(), "latency_ms":
                               a.latency_ms, "concurrency": a.concurrency, "rows": rows},
                              indent=2))
    print(f"\n{out}")


if __name__ == "__main__":
    main()
