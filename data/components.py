"""Names of the E1 variance components and how they aggregate (STUDY.md, E1).

Kept in ``misalign.data`` because the simulator's truth and the fitted shares must agree on them.
"""

from __future__ import annotations

CROSSED = ("llm", "family", "prompt", "task", "llm:prompt", "llm:task", "prompt:task")
NESTED = ("unit:task", "unit", "transcript", "teacher")
COMPONENTS = CROSSED + NESTED + ("residual",)

AGGREGATES = {
    "attributable": ("llm", "family", "prompt", "llm:prompt", "llm:task", "prompt:task"),
    "shared": ("unit:task", "unit", "transcript", "teacher"),
    "task": ("task",),
    "residual": ("residual",),
    # Reported on its own as well: how much of the selection effect is pretraining lineage.
    "family": ("family",),
}
# attributable + shared + task + residual = 1 per draw; "family" is inside "attributable".
PARTITION = ("attributable", "shared", "task", "residual")


def finite_population_shares(variances: dict[str, float]
                             ) -> tuple[dict[str, float], dict[str, float]]:
    total = sum(variances.values())
    shares = {k: variances[k] / total for k in COMPONENTS if k in variances}
    aggregates = {a: sum(shares.get(c, 0.0) for c in members) for a, members in AGGREGATES.items()
                  if any(c in variances for c in members)}
    return shares, aggregates
