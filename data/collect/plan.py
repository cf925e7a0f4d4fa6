"""What a study asks for: one request per (unit, task, strategy, LLM, replicate), and the
dry-run report of it (sample prompts, counts, a cost estimate)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from .cost import TYPICAL_OUTPUT_TOKENS, approx_tokens, batch_pricing_for, pricing_for
from .modes import resolve_mode
from .prompts import PromptBuilder, template_version
from .store import rating_key
from .study import Study
from .units import Units


def plan_size(study: Study, units: Units, shard: tuple[int, int] | None = None) -> int:
    if shard is not None and shard[1] > 1:
        return sum(1 for _ in iter_plan(study, units, shard))
    return len(units) * len(study.tasks) * len(study.strategies) * len(study.llms) * \
        study.replicates


def parse_shard(text: str) -> tuple[int, int]:
    """``"i/n"`` → (i, n) with 1 ≤ i ≤ n."""
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise ValueError(f"--shard must be i/n, e.g. 1/4 (got {text!r})") from None
    if not 1 <= i <= n:
        raise ValueError(f"--shard {text}: need 1 ≤ i ≤ n")
    return i, n


def in_shard(key: str, shard: tuple[int, int] | None) -> bool:
    """A stable split of the plan: the key is a hash already, so its first 32 bits are
    uniform, and the same on every machine and in every run."""
    return shard is None or int(key[:8], 16) % shard[1] == shard[0] - 1


def iter_plan(study: Study, units: Units, shard: tuple[int, int] | None = None
              ) -> Iterator[tuple]:
    """Rows for ``Store.sync_plan``, unit by unit, so a run interleaves LLMs (one provider's
    rate limit never holds up the others for long); only shard i of n when given."""
    versions = {(s, r.task): template_version(s, r) for s in study.strategies
                for r in study.tasks}
    for unit_id in units.frame["unit_id"]:
        for rubric in study.tasks:
            for strategy in study.strategies:
                tv = versions[(strategy, rubric.task)]
                for llm in study.llms:
                    for rep in range(1, study.replicates + 1):
                        key = rating_key(llm.name, llm.model, strategy, rubric.task, unit_id,
                                         rep, tv)
                        if in_shard(key, shard):
                            yield (key, llm.name, llm.model, llm.family, strategy, rubric.task,
                                   unit_id, rep, tv)


@dataclass
class DryRun:
    total: int
    scored: int
    to_send: int
    samples: dict[tuple[str, str], list[dict[str, str]]]  # (task, strategy) -> messages
    per_llm: list[dict]  # name, model, mode, requests, tokens_in, tokens_out, cost, cost_max,
    # pricing, and the same at the batch price: cost_batch, cost_batch_max, pricing_batch
    total_cost: float  # of the priced LLMs only, each at the price of its mode
    total_cost_max: float
    unpriced: list[str]  # LLMs with no price: not in the totals, not bounded by the cap


def dry_run(study: Study, units: Units, scored_keys: set[str] | None = None,
            sample_units: int = 50, mode: str | None = None,
            shard: tuple[int, int] | None = None) -> DryRun:
    """Counts and a cost estimate without sending anything. Prompt length is measured on up to
    ``sample_units`` units and scaled; output tokens are a typical length per strategy (and
    ``max_tokens`` for the upper bound). Each LLM is priced live and in batch; the totals use
    the price of the mode it would be collected in (``mode``: the ``--mode`` override); only
    shard i of n when ``shard`` is given."""
    scored_keys = scored_keys or set()
    builder = PromptBuilder(study.rag)
    texts = list(units.frame["text"])
    first = texts[0]
    samples = {(r.task, s): builder.messages(first, r, s) for r in study.tasks
               for s in study.strategies}
    sample = texts[:sample_units]
    mean_in = {(r.task, s): sum(approx_tokens(builder.messages(t, r, s)) for t in sample)
               / len(sample) for r in study.tasks for s in study.strategies}
    full = plan_size(study, units)
    total = plan_size(study, units, shard)
    to_send = sum(1 for row in iter_plan(study, units, shard) if row[0] not in scored_keys) \
        if scored_keys or shard else total
    share = to_send / full if full else 0.0
    per_llm, tot, tot_max = [], 0.0, 0.0
    unpriced = []
    for llm in study.llms:
        n = len(units) * study.replicates * share
        t_in = sum(mean_in.values()) * n
        t_out = sum(min(llm.max_tokens, TYPICAL_OUTPUT_TOKENS[s]) for s in study.strategies) \
            * len(study.tasks) * n
        t_max = llm.max_tokens * len(study.tasks) * len(study.strategies) * n
        price, bprice = pricing_for(llm), batch_pricing_for(llm)
        how = resolve_mode(llm, study, mode)
        cost = price.cost(int(t_in), int(t_out))
        cost_max = price.cost(int(t_in), int(t_max))
        cost_b = bprice.cost(int(t_in), int(t_out))
        cost_b_max = bprice.cost(int(t_in), int(t_max))
        used, used_max = (cost_b, cost_b_max) if how == "batch" else (cost, cost_max)
        if used is None:
            unpriced.append(llm.name)
        else:
            tot += used
            tot_max += used_max
        per_llm.append({"name": llm.name, "model": llm.model, "mode": how,
                        "requests": round(n * len(study.tasks) * len(study.strategies)),
                        "tokens_in": int(t_in), "tokens_out": int(t_out), "cost": cost,
                        "cost_max": cost_max, "pricing": price.source, "cost_batch": cost_b,
                        "cost_batch_max": cost_b_max, "pricing_batch": bprice.source})
    return DryRun(total, total - to_send, to_send, samples, per_llm, tot, tot_max, unpriced)
