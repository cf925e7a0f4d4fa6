"""Options every model and command shares, each with its one default (the Python API and the
CLI read them from here). Light on purpose: the CLI imports it before anything heavy."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

SAMPLERS = ("nutpie", "numpyro", "pymc")
LIKELIHOODS = ("gaussian", "student")
# E1's prior structures (models/e1_priors.py): the variance budget (default), independent σ's.
PRIOR_STRUCTURES = ("budget", "independent")
# Prior sets a sensitivity sweep refits under (BayesianModel.prior_set makes them); a model
# may offer more (E1: "independent", its σ's without the variance budget).
NAMED_SETS = ("default", "wide", "narrow", "exponential", "halfstudentt", "sceptical")
# What choosing an LLM or prompt changes: the σ's the "sceptical" set shrinks.
SELECTION = ("llm", "family", "prompt", "llm:prompt", "llm:task", "prompt:task",
             "llm:prompt:task")


@dataclass(frozen=True)
class SamplerConfig:
    """How to sample.

    ``target_accept=None`` means the model's own default (``BayesianModel.default_target_accept``:
    0.9 for E1, 0.8 for the G-study).
    """

    sampler: str = "nutpie"
    draws: int = 1000
    tune: int = 1000
    chains: int = 4
    seed: int | None = 1
    target_accept: float | None = None
    progressbar: bool = True

    def __post_init__(self) -> None:
        if self.sampler not in SAMPLERS:
            raise ValueError(f"sampler must be one of {SAMPLERS}, not {self.sampler!r}")

    @classmethod
    def make(cls, base: SamplerConfig | None = None, **changes: Any) -> SamplerConfig:
        """``base`` (or the defaults) with ``changes``; an unknown option is a TypeError."""
        unknown = set(changes) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise TypeError(f"unknown sampler option(s): {', '.join(sorted(unknown))}")
        return dataclasses.replace(base or cls(), **changes)

    def resolved(self, default_target_accept: float) -> SamplerConfig:
        if self.target_accept is not None:
            return self
        return dataclasses.replace(self, target_accept=default_target_accept)


DEFAULTS = SamplerConfig()


def check_likelihood(likelihood: str) -> str:
    if likelihood not in LIKELIHOODS:
        raise ValueError(f"likelihood must be one of {LIKELIHOODS}, not {likelihood!r}")
    return likelihood
