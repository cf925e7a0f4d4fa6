"""The side tables the simulator writes beside the ratings: each teacher's value-added (E3) and
each LLM's benchmark score (E4)."""

from __future__ import annotations

from typing import Any

import numpy as np


def value_added(cfg: Any, block: dict, quality_variances: dict,
                rng: np.random.Generator) -> np.ndarray:
    """Per teacher of a simulated block: ``cfg.va_reliability`` × their true quality plus
    ``cfg.va_shared`` × the deviation every LLM shares on them, each standardised by its
    generating SD (so the data and the truth's population share one law), plus noise: variance
    1, correlation ``va_reliability`` with true quality and ``va_shared`` with the deviation."""
    r, s = cfg.va_reliability, cfg.va_shared
    if r**2 + s**2 > 1:
        raise ValueError("va_reliability² + va_shared² must be at most 1")
    sd_s = np.sqrt(cfg.error_variances.get("teacher", 0.0))
    z_s = block["teacher_s"] / sd_s if sd_s > 0 else 0.0 * block["teacher_s"]
    z_q = block["teacher_q"] / np.sqrt(quality_variances["teacher"])
    return r * z_q + s * z_s + np.sqrt(1 - r**2 - s**2) * rng.standard_normal(len(z_q))


def benchmarks(llm_effects: np.ndarray, signal: float, rng: np.random.Generator) -> np.ndarray:
    """A benchmark score per LLM in [0.4, 0.95]: ``signal`` × |the LLM's bias| lower, plus
    noise (rounded to 3 decimals, as leaderboards print them); ``signal`` 0: unrelated to
    alignment."""
    bench = np.clip(0.78 + 0.06 * rng.standard_normal(len(llm_effects))
                    - signal * np.abs(llm_effects), 0.4, 0.95)
    return np.round(bench, 3)
