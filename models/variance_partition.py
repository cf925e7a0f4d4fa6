"""The E1 variance-partition model (docs/estimands.md, E1) as a PyMC model class.

error = intercept + crossed effects (llm, family, prompt, task, their two- and three-way
interactions: centred zero-sum, each with its σ) + the reference experts' severity (zero-sum
over experts; a cell's offset is the mean over the experts whose ratings make its reference)
+ nested effects (lineage = family×unit×task, llm×unit×task with replicates, unit×task, unit,
transcript, teacher) + residual (its variance differs by task around σ_residual²).

- Gaussian: every nested effect is integrated out analytically from sufficient statistics
  (``likelihood.py``): the sampler sees only σ's, crossed effects and severities.
- Student-t (robust): each unit×task cell gets one explicit, centred latent b_c; unit,
  transcript and teacher are still integrated out of b's Gaussian prior. No lineage or
  llm×unit×task term (they count as residual there).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pymc as pm
import pytensor.tensor as pt
import xarray as xr
from pymc_extras.prior import Prior

from misalign.data import MisalignmentData
from misalign.data.components import present_aggregates

from .base import SAMPLE_DIMS, BayesianModel, flat_draws, rescaled
from .e1_likelihoods import gaussian_potential, residual_in_place_of_latents, student_likelihood
from .e1_priors import (
    SIGMA_PRIORS,
    STRUCTURES,
    budget_aggregates,
    budget_logp,
    default_priors,
)
from .fast_e1 import e1_fast_path
from .likelihood import SufficientStats, e1_stats
from .options import NAMED_SETS, check_likelihood
from .predictive import (
    pointwise_loglik,
    posterior_predictive,
    prior_predictive,
)
from .priors import PriorError
from .spec import (
    EFFECTS,
    ModelSpec,
    design_means,
    make_spec,
    within_family_basis,
    within_family_labels,
    zero_sum_basis,
)

# The three-way interaction is often near zero and weakly pinned on small data: centred, its
# σ → 0 funnel made NUTS take trees of ~600 steps and left an ESS of 6 (small preset, 160
# ratings per design cell); non-centred it mixes. With thousands of ratings per design cell the
# data pin every effect and the non-centred form's σ–coordinate coupling is what slows NUTS
# (reference preset, 6,600 per cell: R-hat 1.10, ESS 26): there it is centred.
NON_CENTRED = ("llm:prompt:task",)
CENTRE_FROM = 1000  # evidence per coordinate from which an effect is centred (see _centred)


class VariancePartitionModel(BayesianModel):
    """E1: split the misalignment error into what choosing an LLM or prompt changes, what every
    LLM shares, what a lineage shares, the reference's severity, task and residual.

    >>> model = VariancePartitionModel(data)            # data: MisalignmentData
    >>> idata = model.fit(draws=1000, chains=4)         # nutpie by default
    """

    kind = "e1"
    data_class = MisalignmentData
    data_group = "misalignment_data"
    # With every effect on an orthonormal basis, the variance budget sampled on log variances
    # and the reference non-centred, 3 small-preset seeds × 4,000 draws gave no divergence even
    # at 0.8 (the former parameterisation needed 0.95); 0.9 keeps a margin. Student-t: 0.8 (no
    # divergence in 5 small-preset seeds × 4,000 draws nor at reference size, and half the
    # leapfrog steps of 0.9: 15 against 25–27, 31 against 63 at reference size).
    @property
    def default_target_accept(self) -> float:  # type: ignore[override]
        return 0.8 if self.likelihood == "student" else 0.9

    def __init__(self, data: MisalignmentData, likelihood: str = "gaussian",
                 priors: dict[str, Any] | None = None, prior_structure: str = "budget",
                 keep_cell_means: bool = False) -> None:
        """``keep_cell_means``: under Student-t, store the cell latents in the posterior (by
        default only their realised mean squared residual, ``residual_mean_square``, is
        kept: the latents are 1.5 GB at reference size)."""
        self.likelihood = check_likelihood(likelihood)
        self.keep_cell_means = keep_cell_means
        if prior_structure not in STRUCTURES:
            raise ValueError(f"prior_structure must be one of {STRUCTURES}, not "
                             f"{prior_structure!r}")
        self.prior_structure = prior_structure
        self.spec: ModelSpec = make_spec(data, likelihood)
        self.error_sd = float(np.std(data.error)) if data.n_ratings > 1 else 1.0
        K = len(self.spec.coords["task"])
        self.task_weight = np.bincount(data.task, minlength=K) / max(data.n_ratings, 1)
        w = self.spec.reference_weights
        # Per-rating Σ_e w²: the variance of a cell's reference offset is σ²_reference times it.
        self.reference_kappa = (float(np.mean((w**2).sum(axis=1)[data.cell]))
                                if w is not None else 1.0)
        sigmas = sorted(set(priors or {}) & set(SIGMA_PRIORS.values()))
        if prior_structure == "budget" and sigmas:
            raise PriorError(
                f"prior(s) {', '.join(sigmas)} belong to the independent prior structure; the "
                "default variance budget has sigma_total, aggregate_shares and shares_<aggregate>"
                " (set prior_structure=\"independent\", --prior-structure independent, to give "
                "each σ its own prior)")
        super().__init__(data, priors)

    # -- description ---------------------------------------------------------------------
    @property
    def options(self) -> dict[str, Any]:
        return {"likelihood": self.likelihood, "prior_structure": self.prior_structure}

    @property
    def config(self) -> dict[str, Any]:
        chain = self.spec.chain
        return {"model": "variance_partition", "likelihood": self.likelihood,
                "prior_structure": self.prior_structure, "components": self.spec.components,
                "levels": [name for name, _ in self.spec.levels],
                "sub_levels": chain.sub_components if chain is not None else [],
                "error_scale": self.data.error_scale, "task_scale": self.data.task_scale,
                "error_sd": self.error_sd, "reference_kappa": self.reference_kappa,
                "warnings": self.spec.warnings}

    def file_attrs(self) -> dict[str, str]:
        return {"likelihood": self.likelihood, "error_scale": self.data.error_scale}

    @property
    def coords(self) -> dict[str, list[str]]:
        return dict(self.spec.coords)

    def make_default_priors(self) -> dict[str, Prior]:
        return default_priors(self.error_sd, self.spec.components, self.likelihood == "student",
                              self.prior_structure, len(self.spec.coords["task"]))

    def sigma_components(self) -> dict[str, str]:
        """Component → the posterior variable of its σ (a prior, or under the budget prior a
        deterministic of it)."""
        return {c: SIGMA_PRIORS[c] for c in self.spec.components}

    def sensitivity_priors(self) -> list[str]:
        """The σ's priors (as one joint density under the budget) and the intercept's."""
        names = ["intercept"] + (["variance_budget"] if self.prior_structure == "budget" else
                                 [SIGMA_PRIORS[c] for c in self.spec.components])
        return names + [n for n in ("tau_residual",) if n in self.priors]

    def log_prior(self, posterior: xr.Dataset, names: list[str] | None = None) -> xr.Dataset:
        """As the base class; under the budget the σ's enter as one joint density, the budget
        as stated (σ_total's prior and the Dirichlets in their own coordinates): power-scaling
        then scales the priors a user writes. (The density of the component variances carries
        a Jacobian, W^-(A-1) and the like, that would dominate any scaling; Dirichlet(1, …)
        shares are flat and no power changes them: the ``sceptical`` refit varies them.)"""
        names = [n for n in (names or self.sensitivity_priors()) if n != "variance_budget"]
        out = super().log_prior(posterior, names)
        if self.prior_structure != "budget":
            return out
        v = np.stack([(flat_draws(posterior[SIGMA_PRIORS[c]]) ** 2) * self.kappa(c)
                      for c in self.spec.components], axis=-1)
        lp = budget_logp(v, self.priors, self.spec.components, np, jacobian=False).eval()
        out["variance_budget"] = (SAMPLE_DIMS, lp.reshape(posterior.sizes["chain"],
                                                           posterior.sizes["draw"]))
        return out

    @property
    def prior_scale(self) -> float:
        return self.error_sd

    def aggregates(self) -> dict[str, tuple[str, ...]]:
        return present_aggregates(self.spec.components)

    def prior_sets(self) -> tuple[str, ...]:
        return (*NAMED_SETS, "independent") if self.prior_structure == "budget" else NAMED_SETS

    def prior_set(self, name: str) -> tuple[dict[str, Any], dict[str, Any]]:
        """Under the budget prior, the scale sets act on σ_total and ``sceptical`` quarters the
        concentrations of what choosing an LLM or prompt changes; ``independent`` refits with
        independent σ's (the package's former default)."""
        if name == "independent":
            return {}, {"prior_structure": "independent"}
        if self.prior_structure == "independent" or name not in NAMED_SETS or name == "default":
            return super().prior_set(name)
        if name == "sceptical":  # a quarter of the attributable aggregate's concentration
            aggs = list(budget_aggregates(self.spec.components))
            a = list(self.priors["aggregate_shares"].parameters["a"])
            if "attributable" in aggs:
                a[aggs.index("attributable")] /= 4
            return {"aggregate_shares": Prior("Dirichlet", a=a, dims="aggregate")}, {}
        return {"sigma_total": rescaled(self.priors["sigma_total"], name)}, {}

    def kappa(self, comp: str) -> float:
        """A component's variance per rating is κ σ² (κ = 1 but for the reference)."""
        return self.reference_kappa if comp == "reference" else 1.0

    def prior_variances(self, n: int, rng: np.random.Generator) -> pd.DataFrame:
        """Draws of every component's variance (κ σ²) from the priors alone."""
        comps = self.spec.components
        if self.prior_structure == "budget":
            total = pm.draw(_dist(self.priors["sigma_total"]), draws=n, random_seed=rng) ** 2
            psi = pm.draw(_dist(self.priors["aggregate_shares"]), draws=n, random_seed=rng)
            out = {}
            for i, (agg, members) in enumerate(budget_aggregates(comps).items()):
                xi = (pm.draw(_dist(self.priors[f"shares_{agg}"]), draws=n, random_seed=rng)
                      if len(members) > 1 else np.ones((n, 1)))
                for j, c in enumerate(members):
                    out[c] = total * psi[:, i] * xi[:, j]
            return pd.DataFrame(out)[comps]
        out = {c: pm.draw(_dist(self.priors[SIGMA_PRIORS[c]]), draws=n, random_seed=rng) ** 2
               * self.kappa(c) for c in comps}
        return pd.DataFrame(out)

    # -- PyMC ------------------------------------------------------------------------------
    def _sigmas(self, generative: bool = False) -> dict[str, Any]:
        comps = self.spec.components
        if self.prior_structure == "independent":
            return {c: self.priors[SIGMA_PRIORS[c]].create_variable(SIGMA_PRIORS[c])
                    for c in comps}
        if generative:  # the budget as stated: σ_total, then the shares (prior predictive)
            total = self.priors["sigma_total"].create_variable("sigma_total")
            p = self.priors["aggregate_shares"]
            psi = Prior(p.distribution, **p.parameters, dims="aggregate").create_variable(
                "aggregate_shares")
            share = {}
            for i, (agg, members) in enumerate(budget_aggregates(comps).items()):
                if len(members) == 1:
                    share[members[0]] = psi[i]
                    continue
                p = self.priors[f"shares_{agg}"]
                xi = Prior(p.distribution, **p.parameters,
                           dims=f"{agg}_component").create_variable(f"shares_{agg}")
                for j, c in enumerate(members):
                    share[c] = psi[i] * xi[j]
            v = {c: share[c] * total**2 for c in comps}
        else:  # the same prior on log variances, for NUTS (e1_priors.budget_logp)
            log_v = pm.Flat("log_variance", dims="component")
            var = pt.exp(log_v)
            pm.Potential("variance_budget", budget_logp(var, self.priors, comps, pt)
                         + pt.sum(log_v))
            pm.Deterministic("sigma_total", pt.sqrt(pt.sum(var)))
            v = {c: var[i] for i, c in enumerate(comps)}
        return {c: pm.Deterministic(SIGMA_PRIORS[c], pt.sqrt(v[c] / self.kappa(c)))
                for c in comps}

    def _residual_variances(self, sigma_residual):
        """σ²_residual per task: log SDs u_k (zero-sum, spread τ) around a rating-weighted mean
        variance equal to σ_residual² (so the component's variance per rating is
        σ_residual²). Centred: each task's residual variance is pinned by its thousands of
        ratings (non-centred, that tight posterior cost ~2.5× the leapfrog steps)."""
        K = len(self.spec.coords["task"])
        if K == 1:
            return sigma_residual**2
        tau = self.priors["tau_residual"].create_variable("tau_residual")
        u = self._zero_sum("residual_task_log_sd", ("task",), tau)
        w = pt.exp(2.0 * u)
        s2 = sigma_residual**2 * w / pt.dot(self.task_weight, w)
        pm.Deterministic("sigma_residual_task", pt.sqrt(s2), dims="task")
        return s2

    def _centred(self, comp: str) -> bool:
        """Centred unless the effect is one that small data pin weakly: each coordinate's
        evidence (ratings per design cell; unit × task cells per expert) decides."""
        if comp == "reference":
            per = (self.spec.reference_weights > 0).sum() / self.spec.reference_weights.shape[1]
            return bool(per >= CENTRE_FROM)
        return (comp not in NON_CENTRED
                or self.data.n_ratings / self.spec.n_design >= CENTRE_FROM)

    def _zero_sum(self, name: str, dims: tuple[str, ...], sigma, centred: bool = True):
        """A zero-sum effect over ``dims`` as an orthonormal basis times free coordinates
        (``spec.zero_sum_basis``): the distribution of ``pm.ZeroSumNormal``, centred (coordinates
        ~ N(0, σ)) or not (~ N(0, 1), times σ)."""
        sizes = [len(self.spec.coords[d]) for d in dims]
        basis = zero_sum_basis(sizes)
        model = pm.modelcontext(None)
        free = f"{name}_basis"
        model.add_coord(free, [str(i + 1) for i in range(basis.shape[1])])
        if centred:
            z = pm.Normal(f"{name}_free", 0.0, sigma, dims=free)
            value = pt.dot(basis, z)
        else:
            z = pm.Normal(f"{name}_z", 0.0, 1.0, dims=free)
            value = sigma * pt.dot(basis, z)
        return pm.Deterministic(name, value.reshape(sizes), dims=dims)

    def _design_means(self, sig: dict) -> tuple[pt.TensorVariable, pt.TensorVariable]:
        """Create the crossed-effect variables; return (base, rest) from ``design_means``."""
        spec, comps = self.spec, set(self.spec.components)
        eff = {"intercept": self.priors["intercept"].create_variable("intercept")}
        if spec.has_family:
            eff["family_effect"] = self._zero_sum("family_effect", ("family",), sig["family"])
            basis = within_family_basis(spec.llm_family)
            if "llm" in comps and basis.shape[1] > 0:
                pm.modelcontext(None).add_coord("llm_contrast", within_family_labels(
                    spec.llm_family, spec.coords["llm"], spec.coords["family"]))
                z = pm.Normal("llm_within_family", 0.0, sig["llm"], dims="llm_contrast")
                eff["llm_effect"] = pm.Deterministic("llm_effect", pt.dot(basis, z), dims="llm")
        elif "llm" in comps:
            eff["llm_effect"] = self._zero_sum("llm_effect", ("llm",), sig["llm"])
        for comp, (name, dims) in EFFECTS.items():
            if comp in comps and comp not in ("llm", "family"):
                eff[name] = self._zero_sum(name, dims, sig[comp], self._centred(comp))
        return design_means(eff, spec, pt)

    def build_model(self, generative: bool = False) -> pm.Model:
        """The PyMC model; ``generative=True`` states the budget prior generatively (for
        forward sampling from the prior; same prior, a parameterisation NUTS mixes worse in)."""
        spec = self.spec
        coords = dict(spec.coords)
        if self.prior_structure == "budget":
            aggs = budget_aggregates(spec.components)
            coords["aggregate"] = list(aggs)
            coords["component"] = list(spec.components)
            coords |= {f"{a}_component": list(m) for a, m in aggs.items() if len(m) > 1}
        with pm.Model(coords=coords) as model:
            sig = self._sigmas(generative)
            sig.setdefault("unit:task", pt.constant(0.0))  # absent: counted in the residual
            base, rest = self._design_means(sig)
            s2e = self._residual_variances(sig["residual"])
            offset = None
            if spec.reference_weights is not None:
                # A few experts' severities behind a few hundred noisy cells each are weakly
                # pinned, and centred their σ → 0 funnel made divergences (small preset);
                # behind thousands each (reference preset) non-centred mixed poorly.
                offset = self._zero_sum("reference_effect", ("expert",), sig["reference"],
                                        centred=self._centred("reference"))
            if generative:  # forward sampling from the prior: no likelihood
                if self.likelihood == "student":
                    self.priors["nu_minus_2"].create_variable("nu_minus_2")
            elif self.likelihood == "gaussian":
                self._gaussian(base, rest, sig, s2e, offset)
            else:
                self._student(model, base, rest, sig, s2e, offset)
        if not generative:
            self.model = model
        return model

    def sufficient_stats(self) -> SufficientStats:
        """The Gaussian likelihood's one pass over the ratings (kept: the PyMC graph and the
        compiled fast path both read it)."""
        if getattr(self, "_stats", None) is None:
            self._stats = e1_stats(self.spec, self.data)
        return self._stats

    def fast_path(self) -> tuple[Any, tuple] | None:
        """The compiled kernels (fast_e1.py; Student-t: student_kernels.py): nothing to
        compile per data set; None for what they do not cover."""
        return e1_fast_path(self)

    def after_sampling(self, idata: xr.DataTree, cfg: Any) -> xr.DataTree:
        """Student-t through the PyMC graph: the cell latents' realised mean squared residual
        in their place, as the fast path stores it (unless ``keep_cell_means``)."""
        if self.likelihood != "student":
            return idata
        return residual_in_place_of_latents(self, idata, self.keep_cell_means)

    def _gaussian(self, base, rest, sig: dict, s2e, offset) -> None:
        gaussian_potential(self, base, rest, sig, s2e, offset)

    def _student(self, model: pm.Model, base, rest, sig: dict, s2e, offset) -> None:
        student_likelihood(self, model, base, rest, sig, s2e, offset)

    # -- predictive and sensitivity ---------------------------------------------------------
    def sample_prior_predictive(self, draws: int = 100, seed: int | None = None) -> xr.DataTree:
        """Errors replicated from the prior (nested effects drawn afresh)."""
        return prior_predictive(self, draws=draws, seed=seed)

    def sample_posterior_predictive(self, draws: int = 100, seed: int | None = None
                                    ) -> xr.DataTree:
        """Errors replicated from ``draws`` posterior draws, nested effects drawn afresh."""
        if self.idata is None:
            raise RuntimeError("fit the model (or load a fitted one) before posterior predictive")
        return posterior_predictive(self, draws=draws, seed=seed)

    def pointwise_log_likelihood(self, posterior: xr.Dataset, chunk: int = 250
                                 ) -> xr.DataArray:
        """(chain, draw, top level) marginal log likelihood per top-level node (teachers, or
        the highest level the data identify): given the crossed effects and σ's those nodes
        are independent, so this factorises the Gaussian likelihood exactly."""
        return pointwise_loglik(self, posterior, chunk)

def _dist(prior: Prior):
    return getattr(pm, prior.distribution).dist(**prior.parameters)
