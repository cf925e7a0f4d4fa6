"""The ensembles E4 reports, as weights over the sources (LLM × prompt): shared by the model's
results and the simulator's truth, so both average the same ratings.

- ``all sources``: every source alike;
- ``all LLMs × <prompt>``: every LLM under one prompt alike;
- ``benchmark-weighted``: each LLM's weight ∝ its benchmark score, split equally over its
  prompts (with benchmarks);
- ``best on benchmark``: the best-benchmarked LLM alone, its prompts alike (with benchmarks).

A weighted mean of single ratings is linear, so its moments follow from the sources' (the model
in closed form per draw, the truth from the population's covariances). Majority vote is not
linear and is not among them.
"""

from __future__ import annotations

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
