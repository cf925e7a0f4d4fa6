"""E1's default priors, scaled to the data: a neutral variance budget, or independent σ's.

**budget** (default; after the R2D2 and R2D2M2 priors of Zhang et al. 2022 and Aguilar & Bürkner
2023): the total error variance W = σ_total² with σ_total ~ HalfNormal(1.5 × the SD of the
errors) is split in two stages: among the present aggregates by ``aggregate_shares`` ~
Dirichlet(1, …, 1), then inside each aggregate of several components by ``shares_<aggregate>``
~ Dirichlet(1, …, 1). Every aggregate's prior share is Beta(1, A − 1), mean 1/A for A
aggregates, whatever its number of components (a single Dirichlet over the components with
concentrations 1/m per component is neutral too, but its density spikes at 0 and NUTS could not
sample it: R-hat 1.6 on the small preset). Component c's variance is its share times W (σ_c =
√(share W / κ_c), κ_c the per-rating weight of its effect: 1, or Σ w² of the expert weights for
the reference).

**independent**: every σ HalfNormal(SD of the errors), the intercept Normal(0, 2.5 SD) (the
package's first default; a total SD of ≈ 3.5 × the data's a priori with 12 components, and a
prior share that grows with an aggregate's number of components).

Either way: ``tau_residual`` ~ HalfNormal(0.5) spreads the residual variance across tasks (log
scale); Student-t adds ν = 2 + ``nu_minus_2``, Gamma(2, 0.1).
"""

from __future__ import annotations

from pymc_extras.prior import Prior

from misalign.data.components import present_aggregates

from .options import PRIOR_STRUCTURES

SIGMA_PRIORS = {
    "llm": "sigma_llm", "family": "sigma_family", "prompt": "sigma_prompt", "task": "sigma_task",
    "llm:prompt": "sigma_llm_prompt", "llm:task": "sigma_llm_task",
    "prompt:task": "sigma_prompt_task", "llm:prompt:task": "sigma_llm_prompt_task",
    "unit:task": "sigma_unit_task", "unit": "sigma_unit", "transcript": "sigma_transcript",
    "teacher": "sigma_teacher", "lineage": "sigma_lineage", "reference": "sigma_reference",
    "llm:unit:task": "sigma_llm_unit_task", "residual": "sigma_residual",
}
STRUCTURES = PRIOR_STRUCTURES
TOTAL_SCALE = 1.5  # σ_total's HalfNormal scale, in SDs of the errors


def budget_aggregates(components: list[str]) -> dict[str, tuple[str, ...]]:
    """The aggregates the budget splits over (those that partition the total), with their
    present components."""
    return {a: m for a, m in present_aggregates(components).items() if a != "family"}


def default_priors(error_sd: float, components: list[str], student: bool,
                   structure: str = "budget", n_tasks: int = 1) -> dict[str, Prior]:
    if structure not in STRUCTURES:
        raise ValueError(f"prior structure must be one of {STRUCTURES}, not {structure!r}")
    s = float(error_sd) if error_sd > 0 else 1.0
    priors = {"intercept": Prior("Normal", mu=0.0, sigma=round(2.5 * s, 6))}
    if structure == "budget":
        priors["sigma_total"] = Prior("HalfNormal", sigma=round(TOTAL_SCALE * s, 6))
        aggs = budget_aggregates(components)
        priors["aggregate_shares"] = Prior("Dirichlet", a=[1.0] * len(aggs), dims="aggregate")
        for agg, members in aggs.items():
            if len(members) > 1:
                priors[f"shares_{agg}"] = Prior("Dirichlet", a=[1.0] * len(members))
    else:
        for comp in components:
            priors[SIGMA_PRIORS[comp]] = Prior("HalfNormal", sigma=round(s, 6))
    if n_tasks > 1:
        priors["tau_residual"] = Prior("HalfNormal", sigma=0.5)
    if student:
        priors["nu_minus_2"] = Prior("Gamma", alpha=2.0, beta=0.1)
    return priors


def budget_logp(v, priors: dict[str, Prior], components: list[str], xp,
                jacobian: bool = True):
    """log density of the component variances v (…, components) under the budget prior
    (``jacobian=False``: the density of the budget as stated, in its own coordinates σ_total,
    ψ, ξ, at the point v maps to; what power-scaling scales).

    The budget is stated generatively (σ_total, then the shares); NUTS samples log v instead
    (each variance free, as with independent σ's: the (σ_total, shares) coordinates made the
    well-identified variances oblique and mixing poor). By the change of variables
    v ↦ (W = Σ v, ψ = V_a / W, ξ_a = v_a / V_a), with W = σ_total²:

        log p(v) = log p_σ(√W) − log(2√W) + log Dir(ψ) − (A − 1) log W
                   + Σ_a [log Dir(ξ_a) − (m_a − 1) log V_a]
    """
    import pymc as pm

    def logp(prior: Prior, value):
        return pm.logp(getattr(pm, prior.distribution).dist(**prior.parameters), value)

    index = {c: i for i, c in enumerate(components)}
    aggs = budget_aggregates(components)
    W = xp.sum(v, axis=-1)
    V = xp.stack([sum(v[..., index[c]] for c in m) for m in aggs.values()], axis=-1)
    j = 1.0 if jacobian else 0.0
    lp = logp(priors["sigma_total"], xp.sqrt(W)) - j * xp.log(2 * xp.sqrt(W))
    if len(aggs) > 1:
        lp = (lp + logp(priors["aggregate_shares"], V / W[..., None])
              - j * (len(aggs) - 1) * xp.log(W))
    for i, (agg, members) in enumerate(aggs.items()):
        if len(members) > 1:
            xi = xp.stack([v[..., index[c]] for c in members], axis=-1) / V[..., i:i + 1]
            lp = (lp + logp(priors[f"shares_{agg}"], xi)
                  - j * (len(members) - 1) * xp.log(V[..., i]))
    return lp
