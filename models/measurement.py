"""The joint measurement model of expert and LLM scores (MEASUREMENT.md), kind ``measurement``.

Per task, on the task's expert-SD scale (``data/measurement.py``): every node of the tree
teacher ⊃ lesson ⊃ cell carries true quality and a deviation all LLMs share; an expert rating
is μ_E + θ + ρ_rater + noise; an LLM rating by source s = (llm, prompt) is μ_s + λ_s θ + φ +
noise. Intercepts, log loadings and log noise SDs of the sources are hierarchical over LLM and
prompt (zero-sum effects around a per-task mean, one scale per effect shared by the tasks); the
severities ρ are explicit and zero-sum (a random rater effect would cross the tree and break the
exact recursion); node latents are integrated out (``measurement_likelihood.py``). Tasks stack
in one graph with their own parameters. Value-added (E3), when given, loads on the teacher's
quality and shared deviation.

The experts' severity and noise come from double-rated cells when the data have them, or from a
G-study of the same instrument (``experts_prior``): its rater variance and its residual (which
holds segment variance too, so it bounds the noise from above) on each task's expert-SD scale.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pymc as pm
import pytensor.tensor as pt
import xarray as xr
from pymc_extras.prior import Prior

from misalign.data.measurement import MeasurementData

from .base import BayesianModel
from .fast_sampler import sample_fast
from .measurement_likelihood import dense_leaves, tree_logp
from .options import SamplerConfig
from .recursion import pt_segment_sum
from .restart import restart_stuck_chains
from .spec import zero_sum_basis

LEVELS = ("cell", "lesson", "teacher")
CENTRE_FROM = 1000  # cells per task from which loadings and noise effects are centred
RATER_CENTRE_FROM = 100  # expert ratings per rater and task from which severities are centred
# Effects of the choice of LLM and prompt on a source's intercept, loading and log noise SD.
# Every source parameter varies by LLM, prompt and their pairing: on the 1–3 rubrics a source
# whose bias puts it at the floor has its loadings (and noise) compressed by the clipping, and
# that happens to one LLM × prompt, not additively.
SOURCE_TERMS = {term: ("llm", "prompt", "llm_prompt")
                for term in ("mu", "lambda", "log_noise")}


VA_PRIORS = ("va_intercept", "va_sd", "va_rho_shared", "va_rho_quality_room")


def measurement_default_priors() -> dict[str, Prior]:
    """On the expert-SD scale a single expert rating has variance 1 = quality + severity +
    noise; every variance prior allows any one part to be all of it."""
    p = {"mu_expert": Prior("Normal", mu=0.0, sigma=1.0),
         "sigma_rater": Prior("HalfNormal", sigma=0.5),
         "sigma_expert": Prior("HalfNormal", sigma=1.0),
         "mu_llm": Prior("Normal", mu=0.0, sigma=1.0),
         # λ̄ < 1 is the compression LLM ratings show. Positive: the experts fix the sign of
         # quality only through their own noisy ratings, and with noisy experts a mirror mode
         # (LLMs loading negatively on an expert-noise "quality") trapped a chain at one of six
         # seeds; LLMs whose ratings fall as quality rises are not a model worth entertaining.
         "lambda_mean": Prior("LogNormal", mu=float(np.log(0.8)), sigma=0.5),
         "log_noise_mean": Prior("Normal", mu=float(np.log(0.6)), sigma=1.0)}
    # One σ per latent and level. (A total with a Dirichlet split over the levels mixed better
    # but its prior pulled the cell's share of quality to 1/3 against a true 0.55, and with it
    # the noise ceiling below its truth: the split is weakly identified on small designs.)
    for level in LEVELS:
        p[f"sigma_quality_{level}"] = Prior("HalfNormal", sigma=1.0)
        p[f"sigma_shared_{level}"] = Prior("HalfNormal", sigma=1.0)
    # Value-added (E3), standardised over the teachers that have it; per task, so each task's
    # posterior is what a fit of that task alone gives (MEASUREMENT.md).
    p["va_intercept"] = Prior("Normal", mu=0.0, sigma=1.0)
    # V = ν₀ + SD_V (ρ_q z_q + ρ_s z_s + √(1 − ρ_q² − ρ_s²) ε), z the teacher's quality and
    # shared deviation in SD units: the correlations are the parameters. ρ_s is uniform on
    # (−1, 1) and ρ_q uniform on the chord that leaves (ρ_q = room · √(1 − ρ_s²)): the shared
    # deviation is the weaker-measured latent (a teacher's SD 0.1–0.3 on this scale), so its
    # correlation gets the flat prior; with ρ_q first, ρ_s's marginal prior leans to 0 (density
    # at |ρ_s| = 0.6 is 0.59 of that at 0) and the paper preset's misalignment correlations
    # (truth ≈ −0.35) fell short of their intervals in one task per seed. Coefficients per unit
    # of the latent (β ~ N(0, 1)) shrank ρ_s = −0.6 to 0 (it needs β_s ≈ −2…−6), and wide β's
    # gave a funnel where that SD goes to 0 (docs/measurement.md, the paper-shaped preset).
    p["va_sd"] = Prior("HalfNormal", sigma=1.0)
    p["va_rho_shared"] = Prior("Uniform", lower=-1.0, upper=1.0)
    p["va_rho_quality_room"] = Prior("Uniform", lower=-1.0, upper=1.0)
    p["sigma_llm_cell"] = Prior("HalfNormal", sigma=0.3)
    p["sigma_lineage"] = Prior("HalfNormal", sigma=0.3)
    for term, effects in SOURCE_TERMS.items():
        for eff in effects:
            p[f"sigma_{term}_{eff}"] = Prior("HalfNormal", sigma=0.25 if term == "lambda"
                                             else 0.5)
    return p


class MeasurementModel(BayesianModel):
    kind = "measurement"
    data_class = MeasurementData
    data_group = "measurement_data"
    default_target_accept = 0.9
    prior_total = "SD of a single expert rating (1 on this scale)"

    def __init__(self, data: MeasurementData, priors: dict[str, Any] | None = None,
                 experts_prior: str = "") -> None:
        self.experts_prior = experts_prior  # where the expert priors came from (a file), or ""
        labels = data.source_labels()
        (llms, self.source_llm), (prompts, self.source_prompt) = labels["llm"], labels["prompt"]
        families, self.source_family = labels["family"]
        self.coords = {"task": data.tasks, "source": data.sources, "rater": data.raters,
                       "llm": llms, "prompt": prompts, "family": families}
        self.llm_family = np.zeros(len(llms), np.int64)
        self.llm_family[self.source_llm] = self.source_family
        # Below the cell: an LLM's own error on a cell, whatever the prompt (separable from
        # noise when it rates a cell under two prompts or twice), and the lineage its family
        # shares (separable from what all LLMs share with two families, one of two LLMs).
        k = data.design()["k"].max() if len(data.sources) else 1.0
        self.sub_levels = [n for n, keep in (
            ("llm_cell", np.bincount(self.source_llm).max() > 1 or k > 1),
            ("lineage", len(families) > 1 and np.bincount(self.llm_family).max() > 1)) if keep]
        # Every rating informs a source's intercept (centred mixes best). Its loading and noise
        # rest on the spread of its ratings: non-centred on small designs; centred from
        # CENTRE_FROM cells per source and task, where the data pin them and the non-centred
        # form's coupling of σ and coordinates doubled the leapfrog steps (reference preset,
        # two tasks: 30 → 16 per draw).
        cells = np.bincount(data.cell_task).min() if len(data.cell_task) else 0
        self.centred_terms = frozenset({"mu"} | ({"lambda", "log_noise"}
                                                 if cells >= CENTRE_FROM else set()))
        # The same for the raters' severities, by expert ratings per rater and task (reference
        # preset ≈ 380: non-centred, σ_rater's bulk ESS was 37 of 400 draws).
        f = data.frame
        per_rater = (f["kind"] == "expert").sum() / max(len(data.raters) * len(data.tasks), 1)
        if per_rater >= RATER_CENTRE_FROM:
            self.centred_terms |= {"rater"}
        self.effects = {term: [e for e in effs if all(
            len(self.coords[f]) > 1 for f in e.split("_"))] for term, effs in SOURCE_TERMS.items()}
        super().__init__(data, priors)

    @property
    def options(self) -> dict[str, Any]:
        return {"experts_prior": self.experts_prior}

    @property
    def config(self) -> dict[str, Any]:
        d = self.data
        return {"model": "measurement", "tasks": d.tasks, "sources": d.sources,
                "raters": d.raters, "effects": self.effects,
                "double_rated_cells": self.double_rated_cells(),
                "experts_prior": self.experts_prior or (
                    "double-rated cells" if self.double_rated_cells() else "the default priors "
                    "(no double-rated cells: the experts' noise rests on the LLMs' factor "
                    "structure; a G-study gives a better prior)"),
                "design": d.design().reset_index().to_dict(orient="records"),
                "task_scale": d.task_scale, "warnings": self.warnings()}

    def double_rated_cells(self) -> int:
        f = self.data.frame
        e = f[f["kind"] == "expert"].groupby(["task", "unit_id"], observed=True).size()
        return int((e > 1).sum())

    def warnings(self) -> list[str]:
        out = []
        for f in ("llm", "prompt"):
            if len(self.coords[f]) == 1:
                out.append(f"one {f}: no {f} effects on the sources' intercepts, loadings and "
                           "noise (not estimable)")
        return out + list(self.data.notes)

    @staticmethod
    def default_priors_for() -> dict[str, Prior]:
        """Every prior the model can use (before dropping those the data do not need)."""
        return measurement_default_priors()

    def make_default_priors(self) -> dict[str, Prior]:
        p = measurement_default_priors()
        return {k: v for k, v in p.items() if not self._dropped(k)}

    def _dropped(self, name: str) -> bool:
        for term, effs in SOURCE_TERMS.items():
            for e in effs:
                if name == f"sigma_{term}_{e}":
                    return e not in self.effects[term]
        if name in ("sigma_llm_cell", "sigma_lineage"):
            return name.removeprefix("sigma_") not in self.sub_levels
        if name in VA_PRIORS:
            return not self.data.has_value_added
        return name == "sigma_rater" and len(self.coords["rater"]) < 2

    def sigma_components(self) -> dict[str, str]:
        out = {f"{part}:{level}": f"sigma_{part}_{level}" for part in ("quality", "shared")
               for level in LEVELS}
        out |= {name: f"sigma_{name}" for name in self.sub_levels}
        out["expert_noise"] = "sigma_expert"
        if "sigma_rater" in self.priors:
            out["expert_severity"] = "sigma_rater"
        return out

    def prior_variances(self, n: int, rng: np.random.Generator):
        """The parts of a single expert rating (quality at each level, the raters' severity,
        the experts' noise): on the expert-SD scale they add up to 1 in the data, which is what
        ``misalign prior-check`` holds the priors against."""
        out = super().prior_variances(n, rng)
        keep = [f"quality:{lv}" for lv in LEVELS] + [
            c for c in ("expert_severity", "expert_noise") if c in out]
        return out[keep]

    def fast_path(self) -> tuple[Any, tuple] | None:
        """The compiled kernels (``fast_measurement.py``), kept for a restart."""
        from .fast_measurement import measurement_fast_path

        self._fast = measurement_fast_path(self)
        return self._fast

    def after_sampling(self, idata: xr.DataTree, cfg: SamplerConfig) -> xr.DataTree:
        """Chains stuck in a minor mode are sampled again from the best chain
        (``restart.py``; on the kernels when the fit was); ``fit_config["restarts"]`` says
        which, when any was."""
        timing = self.fit_config["timing"]
        fast = getattr(self, "_fast", None) if timing.get("fast_path") else None
        resample = None
        if fast is not None:
            def resample(config, draw, record):
                from pymc.initial_point import make_initial_point_fn

                # The posterior keeps the natural values: PyMC's transforms give the free
                # vector (one small function, compiled only when a chain was stuck).
                point = make_initial_point_fn(
                    model=self.model, jitter_rvs=set(), return_transformed=True,
                    overrides={rv.name: draw[rv.name].values for rv in self.model.free_RVs})(0)
                start = np.concatenate([np.ravel(point[n]) for n in fast[0].value_names])
                return sample_fast(*fast, model=self.model, config=config, timing=record,
                                   start=start)
        idata, record = restart_stuck_chains(self.model, idata, cfg, timing, resample)
        if record:
            self.fit_config["restarts"] = record
        return idata

    # -- PyMC -----------------------------------------------------------------------------
    def _per_task(self, name: str):
        p = self.priors[name]
        return Prior(p.distribution, **p.parameters, dims="task").create_variable(name)

    def _zero_sum(self, name: str, sigma, dims: tuple[str, ...], centred: bool = False):
        """Effects per task that sum to zero along every other axis: an orthonormal basis
        (``spec.zero_sum_basis``) times N(0, σ) coordinates (the distribution of
        ``pm.ZeroSumNormal``, with a far smaller graph to compile); centred, or as N(0, 1)
        times σ."""
        sizes = [len(self.coords[d]) for d in dims[1:]]
        basis = zero_sum_basis(sizes)
        model = pm.modelcontext(None)
        free = f"{name}_basis"
        model.add_coord(free, [str(i + 1) for i in range(basis.shape[1])])
        if centred:
            value = pt.dot(pm.Normal(f"{name}_free", 0.0, sigma, dims=("task", free)), basis.T)
        else:
            value = sigma * pt.dot(pm.Normal(f"{name}_z", 0.0, 1.0, dims=("task", free)),
                                   basis.T)
        return pm.Deterministic(name, value.reshape((len(self.coords["task"]), *sizes)),
                                dims=dims)

    def _source_term(self, term: str, mean):
        """(task, source): the per-task mean plus the source's LLM and prompt effects."""
        out = mean[:, None] + pt.zeros((len(self.coords["task"]), len(self.coords["source"])))
        m, p = self.source_llm, self.source_prompt
        for eff in self.effects[term]:
            sigma = self._scalar(f"sigma_{term}_{eff}")
            dims = ("task", *eff.split("_"))
            x = self._zero_sum(f"{term}_{eff}_effect", sigma, dims,
                               centred=term in self.centred_terms)
            out = out + (x[:, m] if eff == "llm" else x[:, p] if eff == "prompt" else x[:, m, p])
        return out

    def _scalar(self, name: str):
        return self.priors[name].create_variable(name)

    def _groups(self, T: int, S: int) -> dict | None:
        """The latents below the cell, as ``dense_leaves`` takes them."""
        if not self.sub_levels:
            return None
        L, F = len(self.coords["llm"]), len(self.coords["family"])
        G = np.zeros((S, L))
        G[np.arange(S), self.source_llm] = 1.0
        H = np.zeros((L, F))
        H[np.arange(L), self.llm_family] = 1.0
        zero = pt.zeros(T)
        out = {"llm": (G, self._per_task("sigma_llm_cell") ** 2
                       if "llm_cell" in self.sub_levels else zero)}
        if "lineage" in self.sub_levels:
            out["family"] = (H, self._per_task("sigma_lineage") ** 2)
        return out

    def _value_added(self) -> tuple | None:
        """(standardised value-added, observed, its parameters) per teacher node, or None."""
        d = self.data
        if not d.has_value_added:
            return None
        va, observed, known = d.value_added_nodes()
        t = d.teacher_task
        nu0, sd, rho_s, room = (self._per_task(n) for n in VA_PRIORS)
        rho_q = pm.Deterministic("va_rho_quality", room * pt.sqrt(1.0 - rho_s**2), dims="task")
        resid = sd**2 * (1.0 - rho_s**2) * (1.0 - room**2)  # = SD_V² (1 − ρ_q² − ρ_s²)
        return va, observed, (nu0[t], (sd * rho_q)[t], (sd * rho_s)[t], resid[t] + known)

    def build_model(self) -> pm.Model:
        d = self.data
        st = d.dense_statistics()
        T, S, R = len(d.tasks), len(d.sources), len(d.raters)
        with pm.Model(coords=dict(self.coords)) as model:
            mu_e = self._per_task("mu_expert")
            if "sigma_rater" in self.priors:
                rho = self._zero_sum("rater_effect", self._per_task("sigma_rater")[:, None],
                                     ("task", "rater"), centred="rater" in self.centred_terms)
            else:
                rho = pt.zeros((T, R))
            s_exp = self._per_task("sigma_expert")
            mu = pm.Deterministic("mu_source", self._source_term("mu", self._per_task("mu_llm")),
                                  dims=("task", "source"))
            # Loadings are positive (multiplicative effects around the task's λ̄): with
            # loadings of either sign a chain at the reference size settled in a mode where
            # the quality latent was a contrast among LLMs and the experts pure noise (log
            # density 3,800 below the right mode, never left in 500 iterations).
            log_lam = self._source_term("lambda", pt.log(self._per_task("lambda_mean")))
            lam = pm.Deterministic("lambda_source", pt.exp(log_lam), dims=("task", "source"))
            log_sd = self._source_term("log_noise", self._per_task("log_noise_mean"))
            pm.Deterministic("noise_sd_source", pt.exp(log_sd), dims=("task", "source"))
            msg, const = dense_leaves(st, lam, mu, pt.exp(2 * log_sd), mu_e, rho, s_exp**2, pt,
                                      pt_segment_sum, self._groups(T, S))
            node_task = {"cell": d.cell_task, "lesson": d.lesson_task, "teacher": d.teacher_task}
            omega = {}
            for level in LEVELS:
                q = self._per_task(f"sigma_quality_{level}")
                s = self._per_task(f"sigma_shared_{level}")
                omega[level] = ((q**2)[node_task[level]], (s**2)[node_task[level]])
            pm.Potential("marginal_loglik", const + tree_logp(
                msg, d.cell_lesson, d.lesson_teacher, len(d.lesson_teacher),
                len(d.teacher_task), omega, pt, pt_segment_sum, self._value_added()))
        self.model = model
        return model
