"""The collection runner: asyncio over ``litellm.acompletion``, bounded concurrency, per-model
rate limits, retries with exponential backoff and jitter (honouring ``Retry-After``), a cost cap
that stops new requests cleanly, and every attempt written to the store as it ends."""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import os
import random
import time
import warnings
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from .batch import BatchRunner
from .batch_ledger import BatchLedger
from .cost import Pricing, approx_tokens, pricing_for
from .limits import ModelLimits, backoff, classify, retry_after
from .modes import check_batch, resolve_mode
from .parse import parse_answer
from .plan import iter_plan, plan_size
from .prompts import PromptBuilder
from .redact import RedactingFilter, Redactor
from .store import Attempt, Store, now
from .study import LLMConfig, Study
from .units import Units

log = logging.getLogger("misalign.collect")
AUTH_BREAKER = 5  # consecutive auth failures after which an LLM is not asked again this run


class CollectError(Exception):
    pass


@dataclass
class RunSummary:
    run_id: int
    status: str  # complete, incomplete, cost_cap, interrupted
    planned: int
    new_requests: int
    todo_at_start: int
    attempts: int = 0
    scored: int = 0
    parse_failures: int = 0
    failed: int = 0  # requests that ended this run failed (parse or error)
    errors: Counter = field(default_factory=Counter)  # by kind, every errored attempt
    cost: float = 0.0
    elapsed_s: float = 0.0
    cpu_s: float = 0.0
    store_counts: dict = field(default_factory=dict)
    failure_reasons: dict = field(default_factory=dict)
    spent_total: float = 0.0
    unpriced: list = field(default_factory=list)
    stopped_llms: dict = field(default_factory=dict)
    modes: dict = field(default_factory=dict)  # LLM -> live or batch
    batches: Counter = field(default_factory=Counter)  # created, submitted, completed, …
    shard: str | None = None

    def to_dict(self) -> dict:
        d = asdict(self)
        d["errors"] = dict(self.errors)
        d["batches"] = dict(self.batches)
        return d


def _quiet_litellm():
    import litellm

    litellm.suppress_debug_info = True
    for name in ("LiteLLM", "LiteLLM Router", "LiteLLM Proxy", "litellm"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    return litellm


class Collector:
    def __init__(self, study: Study, units: Units, store: Store, *,
                 concurrency: int | None = None, cost_cap: float | None = None,
                 retry_failed: bool = True, on_progress: Callable[[dict], None] | None = None,
                 on_prepared: Callable[[int], None] | None = None,
                 redactor: Redactor | None = None, log_path: str | None = None,
                 seed: int = 0, mode: str | None = None,
                 shard: tuple[int, int] | None = None) -> None:
        self.study, self.units, self.store = study, units, store
        self.concurrency = concurrency or study.run.concurrency
        self.cost_cap = cost_cap if cost_cap is not None else study.cost_cap_usd
        self.retry_failed = retry_failed
        self.on_progress = on_progress
        self.on_prepared = on_prepared  # called with the number of requests to do
        self.log_path = log_path
        self.redact = redactor or Redactor([m.api_key_env for m in study.llms if m.api_key_env])
        self.rng = random.Random(seed)
        self.llms: dict[str, LLMConfig] = {m.name: m for m in study.llms}
        self.rubrics = {r.task: r for r in study.tasks}
        self.text = units.text_of()
        self.builder = PromptBuilder(study.rag)
        self._prompts: OrderedDict = OrderedDict()
        self.keys = self._keys()
        self.stop_reason: str | None = None
        self.stopped: dict[str, str] = {}
        self.auth_streak: Counter = Counter()
        self.reserved = 0.0
        self.mode = mode  # the --mode override of every LLM's mode
        self.shard = shard
        self.store_id = store.meta("store_id") or "store"

    def _keys(self) -> dict[str, str | None]:
        keys = {}
        for m in self.study.llms:
            keys[m.name] = os.environ.get(m.api_key_env) if m.api_key_env else None
        return keys

    def check_keys(self) -> None:
        """Fail before sending anything if an LLM has no key in the environment."""
        missing = []
        for m in self.study.llms:
            if m.api_key_env:
                if not self.keys[m.name]:
                    missing.append(f"{m.name}: ${m.api_key_env} is not set")
                continue
            try:
                env = self.litellm.validate_environment(model=m.model)
            except Exception:  # providers litellm cannot check: let the first call tell
                continue
            if not env.get("keys_in_environment", True):
                need = ", ".join(env.get("missing_keys", [])) or "its key"
                missing.append(f"{m.name} ({m.model}): set {need}")
        if missing:
            raise CollectError(
                "API keys missing from the environment (keys never go in the study file): "
                + "; ".join(missing) + ". A local server that needs no key still needs the "
                "variable set, to any value.")

    def messages(self, unit_id: str, task: str, strategy: str) -> list[dict[str, str]]:
        k = (unit_id, task, strategy)
        m = self._prompts.get(k)
        if m is None:
            m = self.builder.messages(self.text[unit_id], self.rubrics[task], strategy)
            self._prompts[k] = m
            if len(self._prompts) > 4096:
                self._prompts.popitem(last=False)
        return m

    # -- one request ----------------------------------------------------------------------
    async def _request(self, row: tuple) -> None:
        _, key, rater, _model, _fam, strategy, task, unit_id, _rep, attempts = row
        llm, rubric = self.llms[rater], self.rubrics[task]
        messages = self.messages(unit_id, task, strategy)
        tokens = approx_tokens(messages) + llm.max_tokens
        price = self.prices[rater]
        reserve = price.cost(tokens - llm.max_tokens, llm.max_tokens) or 0.0
        runc = self.study.run
        n = attempts
        for i in range(1, runc.max_attempts + 1):
            if self.stop_reason or rater in self.stopped or self._over_cap(reserve):
                return
            await self.limits[rater].wait(tokens)
            n += 1
            started, t0 = now(), time.perf_counter()
            self.reserved += reserve
            try:
                resp = await self.litellm.acompletion(
                    model=llm.model, messages=messages, api_base=llm.api_base,
                    api_key=self.keys[rater], temperature=llm.temperature,
                    max_tokens=llm.max_tokens, timeout=runc.timeout_s,
                    seed=int(key[:8], 16) % 2**31, num_retries=0, max_retries=0,
                    drop_params=True)
            except Exception as exc:  # every provider error is recorded, none is fatal
                kind, retryable, status = classify(exc)
                last = i == runc.max_attempts or not retryable
                self._record(Attempt(key, n, "error", last, started, now(),
                                     time.perf_counter() - t0, error_kind=kind,
                                     error=self.redact(str(exc))[:2000], http_status=status))
                self.summary.errors[kind] += 1
                if kind == "auth":
                    self.auth_streak[rater] += 1
                    if self.auth_streak[rater] >= AUTH_BREAKER and rater not in self.stopped:
                        self.stopped[rater] = self.redact(str(exc))[:300]
                        log.error("stopping requests to %s for this run: authentication "
                                  "failed %d times in a row", rater, AUTH_BREAKER)
                if last:
                    self._settled(failed=True)
                    return
                wait = retry_after(exc)
                wait = min(wait, 10 * runc.backoff_max_s) * (1 + 0.1 * self.rng.random()) \
                    if wait is not None else backoff(i, runc.backoff_base_s, runc.backoff_max_s,
                                                     self.rng)
                await asyncio.sleep(wait)
                continue
            finally:
                self.reserved -= reserve
            self.auth_streak[rater] = 0
            latency = time.perf_counter() - t0
            content = resp.choices[0].message.content if resp.choices else None
            usage = getattr(resp, "usage", None)
            t_in = getattr(usage, "prompt_tokens", None)
            t_out = getattr(usage, "completion_tokens", None)
            cost = price.cost(t_in, t_out)
            parsed = parse_answer(content, rubric.scale_min, rubric.scale_max)
            a = Attempt(key, n, "scored" if parsed.ok else "parse_failure", True, started, now(),
                        latency, raw_text=self.redact(content), score=parsed.score,
                        parse_status=parsed.status, tokens_in=t_in, tokens_out=t_out, cost=cost)
            if not parsed.ok:
                a.error_kind, a.error = f"parse_{parsed.status}", parsed.detail
            self._record(a)
            if cost:
                self.summary.cost += cost
            if parsed.ok:
                self.summary.scored += 1
                self._settled(failed=False)
            else:
                self.summary.parse_failures += 1
                self._settled(failed=True)
            return

    def _over_cap(self, reserve: float) -> bool:
        if self.cost_cap is None:
            return False
        if time.monotonic() - self._spent_at > 5.0:
            # What other processes (shards) have recorded since: re-read every few seconds.
            self.spent0 = self.store.spent() - self.summary.cost
            self._spent_at = time.monotonic()
        if self.spent0 + self.summary.cost + self.reserved + reserve > self.cost_cap:
            if not self.stop_reason:
                self.stop_reason = "cost_cap"
                log.warning("cost cap %.4f USD reached (spent %.4f); no new requests",
                            self.cost_cap, self.spent0 + self.summary.cost)
            return True
        return False

    def _record(self, a: Attempt) -> None:
        self.store.record(self.summary.run_id, a)
        self.summary.attempts += 1
        if a.settles and a.outcome != "scored":
            log.info("failed %s: %s: %s", a.key, a.error_kind, a.error)

    def _batch_progress(self, states: dict[int, str]) -> None:
        if self.on_progress:
            self.on_progress({"done": self.summary.scored + self.summary.failed,
                              "failed": self.summary.failed, "cost": self.summary.cost,
                              "batches": dict(Counter(states.values()))})

    def _settled(self, failed: bool) -> None:
        if failed:
            self.summary.failed += 1
        if self.on_progress:
            self.on_progress({"done": self.summary.scored + self.summary.failed,
                              "failed": self.summary.failed, "cost": self.summary.cost})

    # -- the run --------------------------------------------------------------------------
    async def _worker(self, queue: asyncio.Queue) -> None:
        while True:
            row = await queue.get()
            try:
                if row is None:
                    return
                await self._request(row)
            finally:
                queue.task_done()

    async def _run(self, rows, skip: frozenset = frozenset()) -> None:
        queue: asyncio.Queue = asyncio.Queue(maxsize=2 * self.concurrency)
        workers = [asyncio.create_task(self._worker(queue)) for _ in range(self.concurrency)]
        try:
            for row in rows:
                if self.stop_reason:
                    break
                if row[2] in self.stopped or row[2] in skip:
                    continue
                await queue.put(row)
            for _ in workers:
                await queue.put(None)
            await asyncio.gather(*workers)
        finally:
            for w in workers:
                w.cancel()

    def prepare(self) -> tuple[int, int]:
        """Write units and plan to the store; (new requests, requests still to do)."""
        rows = zip(self.units.frame["unit_id"], self.units.frame["transcript_id"],
                   self.units.frame["teacher_id"], self.units.digests(), strict=True)
        changed = self.store.sync_units(rows)
        if changed:
            raise CollectError(
                f"{len(changed)} unit(s) have a different text than when this store rated them "
                f"(first: '{changed[0]}'); use a new store, or give changed segments new ids")
        self.store.set_meta("study", json.dumps(self.study.describe(), sort_keys=True))
        new = self.store.sync_plan(iter_plan(self.study, self.units, self.shard))
        c = self.store.plan_counts()
        todo = c["pending"] + c["batched"] + (c["failed"] if self.retry_failed else 0)
        return new, todo

    def run(self) -> RunSummary:
        """Collect what is not yet scored; returns when every request has been tried."""
        with warnings.catch_warnings():
            # On Ctrl-C the loop cancels requests litellm has created but not yet started;
            # Python then warns that their coroutines were never awaited. Nothing is lost
            # (they were never sent), so the warning would only alarm.
            warnings.filterwarnings("ignore", message="coroutine .* was never awaited",
                                    category=RuntimeWarning)
            try:
                return asyncio.run(self.arun())
            finally:
                gc.collect()  # so the cancelled requests are freed while the filter holds

    async def arun(self) -> RunSummary:
        """``run`` for callers that already have an event loop (e.g. a notebook)."""
        self.litellm = _quiet_litellm()
        modes = {m.name: resolve_mode(m, self.study, self.mode) for m in self.study.llms}
        batched = [n for n, m in modes.items() if m == "batch"]
        for name in batched:
            why = check_batch(self.llms[name])
            if why:
                raise CollectError(why)
        self.check_keys()
        self.prices: dict[str, Pricing] = {m.name: pricing_for(m) for m in self.study.llms}
        self.limits = {m.name: ModelLimits(m.rpm, m.tpm) for m in self.study.llms}
        new, todo = self.prepare()
        if self.on_prepared:
            self.on_prepared(todo)
        self.spent0 = self.store.spent()
        self._spent_at = time.monotonic()
        shard = f"{self.shard[0]}/{self.shard[1]}" if self.shard else None
        options = {"study": self.study.name, "study_digest": self.study.digest,
                   "concurrency": self.concurrency, "cost_cap_usd": self.cost_cap,
                   "retry_failed": self.retry_failed, "run": asdict(self.study.run),
                   "pid": os.getpid(), "shard": shard, "modes": modes}
        run_id = self.store.begin_run(options)
        self.summary = RunSummary(run_id, "running", plan_size(self.study, self.units,
                                                                self.shard), new,
                                  todo, unpriced=[n for n, p in self.prices.items()
                                                  if not p.known], modes=modes, shard=shard)
        handler = None
        if self.log_path:
            handler = logging.FileHandler(self.log_path, encoding="utf-8")
            handler.setFormatter(logging.Formatter(
                "%(asctime)s %(levelname)s run=" + str(run_id) + " %(message)s"))
            handler.addFilter(RedactingFilter(self.redact))
            log.addHandler(handler)
            log.setLevel(logging.INFO)
        log.info("run %d: %d requests planned, %d new, %d to do", run_id,
                 self.summary.planned, new, todo)
        t0, c0 = time.perf_counter(), time.process_time()
        status = "interrupted"
        try:
            auto = {m.name for m in self.study.llms
                    if (self.mode or m.mode or self.study.mode) == "auto"}
            # An LLM collected live now may have batches of an earlier run still to collect.
            carry = frozenset(f.llm for f in BatchLedger(self.store).in_flight()
                              if f.llm in modes and f.llm not in batched)
            runner = BatchRunner(self, batched + sorted(carry), auto, carry)
            await asyncio.gather(self._run(self.store.todo(self.retry_failed),
                                           frozenset(batched)), runner.run())
            for name in runner.to_live:  # auto mode, and the provider has no batch API
                self.summary.modes[name] = "live (no batch API)"
            if runner.to_live:
                await self._run(self.store.todo(self.retry_failed),
                                frozenset(modes) - set(runner.to_live))
            if carry:  # lines of their old batches that came back failed: pending again
                await self._run(self.store.todo(False), frozenset(modes) - carry)
            status = None
        finally:
            s = self.summary
            s.elapsed_s, s.cpu_s = time.perf_counter() - t0, time.process_time() - c0
            s.store_counts = self.store.plan_counts()
            s.failure_reasons = self.store.failure_reasons()
            s.spent_total = self.store.spent()
            s.stopped_llms = dict(self.stopped)
            if status is None:
                left = s.store_counts["pending"] + s.store_counts["failed"] + \
                    s.store_counts["batched"]
                status = "cost_cap" if self.stop_reason == "cost_cap" else (
                    "complete" if left == 0 else "incomplete")
            s.status = status
            self.store.finish_run(run_id, status, s.to_dict())
            log.info("run %d %s: %s", run_id, status, s.to_dict())
            if handler:
                log.removeHandler(handler)
                handler.close()
        return self.summary


def collect(study: Study, units: Units, store: Store, *, log_path: str | None = None,
            **options) -> RunSummary:
    """Collect every rating of ``study`` for ``units`` into ``store`` that is not yet scored."""
    return Collector(study, units, store, log_path=log_path, **options).run()
