"""Names of the E1 variance components and how they aggregate (docs/estimands.md, E1).

Kept in ``misalign.data`` because the simulator's truth and the fitted shares must agree on them.
"""

from __future__ import annotations

CROSSED = ("llm", "family", "prompt", "task", "llm:prompt", "llm:task", "prompt:task",
           "llm:prompt:task")
NESTED = ("unit:task", "unit", "transcript", "teacher")
# Reporting order: what choosing an LLM or prompt changes, what every LLM shares, what one
# family shares, the reference's own severity, then the residual parts.
COMPONENTS = CROSSED + NESTED + ("lineage", "reference", "llm:unit:task", "residual")

AGGREGATES = {
    "attributable": ("llm", "family", "prompt", "llm:prompt", "llm:task", "prompt:task",
                     "llm:prompt:task"),
    "shared": ("unit:task", "unit", "transcript", "teacher"),
    "lineage": ("lineage",),
    "reference": ("reference",),
    "task": ("task",),
    "residual": ("llm:unit:task", "residual"),
    # Reported on its own as well: how much of the selection effect is pretraining lineage.
    "family": ("family",),
}
# These partition the total (sum to 1 per draw); "family" is inside "attributable".
PARTITION = ("attributable", "shared", "lineage", "reference", "task", "residual")


def present_aggregates(components) -> dict[str, tuple[str, ...]]:
    """The aggregates that hold at least one present component (others are not estimable and
    are left out, never reported as 0), each with its present members."""
    have = set(components)
    return {a: tuple(c for c in members if c in have) for a, members in AGGREGATES.items()
            if any(c in have for c in members)}


def finite_population_shares(variances: dict[str, float]
                             ) -> tuple[dict[str, float], dict[str, float]]:
    total = sum(variances.values())
    shares = {k: variances[k] / total for k in COMPONENTS if k in variances}
    aggregates = {a: sum(shares[c] for c in members)
                  for a, members in present_aggregates(variances).items()}
    return shares, aggregates
