"""The ensembles E4 reports, as weights over the sources (LLM × prompt): shared by the model's
results and the simulator's truth, so both average the same ratings.

- ``all sources``: every source alike;
- ``all LLMs × <prompt>``: every LLM under one prompt alike;
- ``benchmark-weighted``: each LLM's weight ∝ its benchmark score, split equally over its
  prompts (with benchmarks);
- ``best on benchmark``: the best-benchmarked LLM alone, its prompts alike (with benchmarks).

A weighted mean of single ratings is linear, so its moments follow from the sources' (the model
in closed form per draw, the truth from the population's covariances). Majority vote is not
linear and is not among them. ``design_weights``: the averages over k of the LLMs × q of the
prompts that E5's expected correlations are the mean over.
"""

from __future__ import annotations

from itertools import combinations, product

import numpy as np
import pandas as pd


def ensemble_weights(source_llm: list[str], source_prompt: list[str],
                     benchmark: dict[str, float] | None = None) -> pd.DataFrame:
    """One row per ensemble, one column per source (in the given order); rows sum to 1."""
    llm = np.asarray(source_llm, dtype=object)
    prompt = np.asarray(source_prompt, dtype=object)
    S = len(llm)
    rows: dict[str, np.ndarray] = {"all sources": np.full(S, 1.0 / S)}
    prompts = list(dict.fromkeys(prompt))
    if len(prompts) > 1:
        for p in prompts:
            mask = prompt == p
            rows[f"all LLMs × {p}"] = mask / mask.sum()
    if benchmark and all(m in benchmark for m in llm):
        per_llm = {m: float(benchmark[m]) for m in dict.fromkeys(llm)}
        n_prompts = {m: int((llm == m).sum()) for m in per_llm}
        w = np.array([per_llm[m] / n_prompts[m] for m in llm])
        if w.sum() > 0:
            rows["benchmark-weighted"] = w / w.sum()
        best = max(sorted(per_llm), key=per_llm.get)  # a tie goes to the first by name
        mask = llm == best
        rows[f"best on benchmark ({best})"] = mask / mask.sum()
    return pd.DataFrame(rows).T.set_axis(range(S), axis=1)


MAX_SUBSETS = 12  # subsets of LLMs × prompts averaged per design (evenly spread when more)


def design_weights(source_llm: list[str], source_prompt: list[str]
                   ) -> dict[tuple[int, int], pd.DataFrame]:
    """Per design (k LLMs, q prompts): one row per subset of k LLMs × q prompts (every subset,
    or ``MAX_SUBSETS`` evenly spread over them in sorted order, so the model and the truth pick
    the same), weights equal over its sources, one column per source in the given order."""
    llm = np.asarray(source_llm, dtype=object)
    prompt = np.asarray(source_prompt, dtype=object)
    llms, prompts = sorted(set(llm)), sorted(set(prompt))
    out = {}
    for k in range(1, len(llms) + 1):
        for q in range(1, len(prompts) + 1):
            subsets = list(product(combinations(llms, k), combinations(prompts, q)))
            if len(subsets) > MAX_SUBSETS:
                pick = np.linspace(0, len(subsets) - 1, MAX_SUBSETS).round().astype(int)
                subsets = [subsets[i] for i in pick]
            rows = [np.isin(llm, ls) & np.isin(prompt, ps) for ls, ps in subsets]
            out[(k, q)] = pd.DataFrame([r / r.sum() for r in rows],
                                       index=[f"subset {i + 1}" for i in range(len(rows))])
    return out


MAJORITY = "majority vote (all sources)"


def majority(scores: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """The majority vote over the last axis of rounded ``scores`` (values among ``levels``):
    the most frequent level; a tie goes to the mean of the tied levels (symmetric, so a vote
    split evenly between two neighbours lands between them rather than on a side)."""
    counts = np.stack([(scores == v).sum(axis=-1) for v in levels], axis=-1)
    top = counts == counts.max(axis=-1, keepdims=True)
    return (top * np.asarray(levels, float)).sum(axis=-1) / top.sum(axis=-1)
