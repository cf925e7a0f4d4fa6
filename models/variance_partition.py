"""The E1 variance-partition model (STUDY.md, E1) as a PyMC model class.

Crossed low-cardinality factors are centred zero-sum effects with their own σ. Nested effects:
- Gaussian: integrated out analytically from sufficient statistics (``likelihood.py``): the
  sampler sees only the σ's and the crossed effects, whatever the number of ratings.
- Student-t (robust): the rating-level t likelihood cannot be integrated in closed form, so each
  unit×task cell gets one explicit, centred latent b_c (its shared error plus everything above it);
  the unit, transcript and teacher effects are still integrated out of b's Gaussian prior by the
  same recursion. Cost: one latent per cell and an O(ratings) gradient.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pymc as pm
import pytensor.tensor as pt
import xarray as xr

from misalign.data import MisalignmentData
from misalign.data.components import AGGREGATES

from .base import SAMPLE_DIMS, BayesianModel, flat_draws
from .likelihood import CellLeaves, SufficientStats, cell_prior_logp, gaussian_marginal_logp
from .options import check_likelihood
from .predictive import posterior_predictive, prior_predictive
from .priors import SIGMA_PRIORS, default_priors
from .recursion import pt_segment_sum
from .spec import (
    ModelSpec,
    design_means,
    full_design_means,
    make_spec,
    within_family_basis,
    within_family_labels,
)

EFFECTS = {  # component -> (posterior variable, dims)
    "llm": ("llm_effect", ("llm",)), "family": ("family_effect", ("family",)),
    "prompt": ("prompt_effect", ("prompt",)), "task": ("task_effect", ("task",)),
    "llm:prompt": ("llm_prompt_effect", ("llm", "prompt")),
    "llm:task": ("llm_task_effect", ("llm", "task")),
    "prompt:task": ("prompt_task_effect", ("prompt", "task")),
}


class VariancePartitionModel(BayesianModel):
    """E1: split the misalignment error into selection, shared, task and residual components.

    >>> model = VariancePartitionModel(data)            # data: MisalignmentData
    >>> idata = model.fit(draws=1000, chains=4)         # nutpie by default
    """

    kind = "e1"
    data_class = MisalignmentData
    data_group = "misalignment_data"

    def __init__(self, data: MisalignmentData, likelihood: str = "gaussian",
                 priors: dict[str, Any] | None = None) -> None:
        self.likelihood = check_likelihood(likelihood)
        self.spec: ModelSpec = make_spec(data, likelihood)
        self.error_sd = float(np.std(data.error)) if data.n_ratings > 1 else 1.0
        super().__init__(data, priors)

    # -- description ---------------------------------------------------------------------
    @property
    def options(self) -> dict[str, Any]:
        return {"likelihood": self.likelihood}

    @property
    def config(self) -> dict[str, Any]:
        return {"model": "variance_partition", "likelihood": self.likelihood,
                "components": self.spec.components,
                "levels": [name for name, _ in self.spec.levels],
                "error_scale": self.data.error_scale, "task_scale": self.data.task_scale,
                "error_sd": self.error_sd, "warnings": self.spec.warnings}

    def file_attrs(self) -> dict[str, str]:
        return {"likelihood": self.likelihood, "error_scale": self.data.error_scale}

    @property
    def coords(self) -> dict[str, list[str]]:
        return dict(self.spec.coords)

    def make_default_priors(self) -> dict:
        return default_priors(self.error_sd, self.spec.components, self.likelihood == "student")

    def sigma_components(self) -> dict[str, str]:
        return {c: SIGMA_PRIORS[c] for c in self.spec.components}

    @property
    def prior_scale(self) -> float:
        return self.error_sd

    def aggregates(self) -> dict[str, tuple[str, ...]]:
        return dict(AGGREGATES)

    # -- PyMC ------------------------------------------------------------------------------
    def _sigma(self, comp: str):
        return self.priors[SIGMA_PRIORS[comp]].create_variable(SIGMA_PRIORS[comp])

    def _design_means(self) -> tuple[pt.TensorVariable, pt.TensorVariable]:
        """Create the crossed-effect variables; return (base, rest) from ``design_means``."""
        spec, comps = self.spec, set(self.spec.components)
        eff = {"intercept": self.priors["intercept"].create_variable("intercept")}
        if spec.has_family:
            eff["family_effect"] = pm.ZeroSumNormal("family_effect", sigma=self._sigma("family"),
                                                    dims="family")
            basis = within_family_basis(spec.llm_family)
            if "llm" in comps and basis.shape[1] > 0:
                pm.modelcontext(None).add_coord("llm_contrast", within_family_labels(
                    spec.llm_family, spec.coords["llm"], spec.coords["family"]))
                z = pm.Normal("llm_within_family", 0.0, self._sigma("llm"),
                              dims="llm_contrast")
                eff["llm_effect"] = pm.Deterministic("llm_effect", pt.dot(basis, z), dims="llm")
        elif "llm" in comps:
            eff["llm_effect"] = pm.ZeroSumNormal("llm_effect", sigma=self._sigma("llm"),
                                                 dims="llm")
        for comp, (name, dims) in EFFECTS.items():
            if comp in comps and comp not in ("llm", "family"):
                eff[name] = pm.ZeroSumNormal(name, sigma=self._sigma(comp), dims=dims,
                                             n_zerosum_axes=len(dims))
        return design_means(eff, spec, pt)

    def build_model(self) -> pm.Model:
        spec, data = self.spec, self.data
        coords = dict(spec.coords)
        with pm.Model(coords=coords) as model:
            base, rest = self._design_means()
            s2 = {name: self._sigma(name) ** 2 for name, _ in spec.levels}
            s2_cell = self._sigma("unit:task") ** 2
            s_resid = self._sigma("residual")
            if self.likelihood == "gaussian":
                stats = SufficientStats.from_arrays(data.error, spec.design, spec.n_design,
                                                    data.cell, spec.levels)
                f = full_design_means(base, rest, spec, pt)
                pm.Potential("marginal_loglik", gaussian_marginal_logp(
                    stats, f, s2_cell, s_resid**2, s2, xp=pt, segsum=pt_segment_sum))
            else:
                n_cells = int(data.cell.max()) + 1
                model.add_coord("cell", np.arange(n_cells))
                # Hierarchical centring: each cell latent carries its intercept + task effect
                # (constant inside the cell), so the location parameters do not fight the
                # 1000s of latents along a direction a diagonal mass matrix cannot adapt to.
                b = pm.Flat("cell_mean", dims="cell")
                pm.Potential("cell_prior", cell_prior_logp(
                    b - base[data.cell_task], s2_cell, spec.levels, s2, pt, pt_segment_sum))
                nu = 2.0 + self.priors["nu_minus_2"].create_variable("nu_minus_2")
                pm.StudentT("error", nu=nu, mu=rest[spec.design] + b[data.cell],
                            sigma=s_resid, observed=data.error)
        self.model = model
        return model

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
        if self.likelihood != "gaussian":
            raise NotImplementedError(
                "power-scaling sensitivity is defined for the Gaussian E1 model; the Student-t "
                "model's likelihood is per rating given its cell latents (not written yet)")
        spec, data = self.spec, self.data
        leaves = CellLeaves.from_arrays(data.error, spec.design, spec.n_design, data.cell,
                                        spec.levels)
        eff = {"intercept": flat_draws(posterior["intercept"])}
        for name, dims in EFFECTS.values():
            if name in posterior:
                eff[name] = flat_draws(posterior[name].transpose(*SAMPLE_DIMS, *dims))
        f = full_design_means(*design_means(eff, spec, np), spec, np)
        s2 = {c: flat_draws(posterior[SIGMA_PRIORS[c]])[:, None] ** 2 for c in spec.components}
        top = spec.levels[-1][0] if spec.levels else "cell"
        return leaves.logp_draws(f, s2["unit:task"], s2["residual"],
                                 {name: s2[name] for name, _ in spec.levels}, posterior, top,
                                 chunk)

