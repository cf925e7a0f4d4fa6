"""The G-study model of expert ratings (generalizability theory, one model per dimension).

    score = intercept + teacher + lesson(teacher) [+ school + district above teacher]
            + rater + residual

Conventions as in E1: named dims (``dimension``, ``rater``, ``teacher``), priors scaled to the
data and recorded, nested effects (lesson, teacher, school, district) integrated out with the
same level-by-level marginal likelihood (``likelihood.py``) where the likelihood is Gaussian,
the rater effect explicit and zero-sum (19 raters in NCTE). Scores are standardised per
dimension before fitting, so every prior reads on one scale (σ's HalfNormal(1), intercept
Normal(0, 1)); variances are reported back on the score scale.

Options: ``correlated=True`` fits all dimensions with a teacher effect per (teacher, dimension)
drawn from a multivariate normal with an LKJ(2) correlation (the teacher-level correlation
says which dimensions measure the same teacher quality); the teacher effects are then explicit
and lessons are still integrated out. ``likelihood="student"`` keeps one explicit lesson
effect per (dimension, lesson) with Student-t segment noise; teacher and higher levels are
still integrated out of the lessons' Gaussian prior.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pymc as pm
import pytensor.tensor as pt
import xarray as xr
from pymc_extras.prior import Prior

from misalign.data.experts import ExpertRatings

from .backend import TARGET_ACCEPT, sample
from .likelihood import pt_segment_sum
from .priors import resolve_priors
from .stacked import StackedStats, stacked_marginal_logp, stacked_prior_logp

FACETS = ("school", "district")
LIKELIHOODS = ("gaussian", "student")


def gstudy_components(facets: tuple[str, ...] = ()) -> list[str]:
    return ["teacher", *[f for f in FACETS if f in facets], "lesson", "rater", "residual"]


def gstudy_default_priors(components: list[str], student: bool) -> dict[str, Prior]:
    """On standardised scores: any single component as large as all the variance together is
    plausible, ten times larger is not."""
    priors = {"intercept": Prior("Normal", mu=0.0, sigma=1.0)}
    for comp in components:
        priors[f"sigma_{comp}"] = Prior("HalfNormal", sigma=1.0)
    if student:
        priors["nu_minus_2"] = Prior("Gamma", alpha=2.0, beta=0.1)
    return priors


@dataclass
class DimensionData:
    """One dimension's ratings as integer codes into the shared coords."""

    name: str
    y: np.ndarray  # standardised scores
    mean: float
    sd: float
    rater: np.ndarray
    lesson: np.ndarray
    teacher: np.ndarray


class GStudyModel:
    def __init__(self, ratings: ExpertRatings, facets: tuple[str, ...] = (),
                 likelihood: str = "gaussian", correlated: bool = False,
                 priors: dict[str, Any] | None = None) -> None:
        if likelihood not in LIKELIHOODS:
            raise ValueError(f"likelihood must be one of {LIKELIHOODS}, not {likelihood!r}")
        unknown = [f for f in facets if f not in FACETS]
        if unknown:
            raise ValueError(f"unknown facet(s) {unknown}; known: {', '.join(FACETS)}")
        for f in facets:
            if not ratings.has(f):
                raise ValueError(f"facet '{f}' requested but the data have no {f} ids "
                                 "(the long format has none; use --format ncte-class)")
        if correlated and facets:
            raise ValueError("the correlated model has explicit teacher effects; school and "
                             "district facets are only available without --correlated")
        if correlated and len(ratings.dimensions) < 2:
            raise ValueError("the correlated model needs at least two dimensions")
        self.ratings, self.facets = ratings, tuple(f for f in FACETS if f in facets)
        self.likelihood, self.correlated = likelihood, correlated
        self.components = gstudy_components(self.facets)
        self.default_priors = gstudy_default_priors(self.components, likelihood == "student")
        self.priors = resolve_priors(self.default_priors, priors)
        self._prepare()
        self.model: pm.Model | None = None
        self.idata: xr.DataTree | None = None
        self.fit_config: dict[str, Any] = {}

    # -- data -----------------------------------------------------------------------------
    def _prepare(self) -> None:
        f = self.ratings.frame
        self.coords: dict[str, list[str]] = {
            "dimension": list(dict.fromkeys(f["dimension"])),
            "rater": sorted(set(f["rater"])), "lesson": sorted(set(f["lesson"])),
            "teacher": sorted(set(f["teacher"]))}
        code = {k: {v: i for i, v in enumerate(vals)} for k, vals in self.coords.items()}
        lessons = f.drop_duplicates("lesson").set_index("lesson")
        self.lesson_teacher = np.array([code["teacher"][t] for t in
                                        lessons.loc[self.coords["lesson"], "teacher"]])
        self.parents: list[tuple[str, np.ndarray]] = [("teacher", self.lesson_teacher)]
        child = self.coords["teacher"]
        teachers = f.drop_duplicates("teacher").set_index("teacher")
        for facet in self.facets:
            labels = sorted(set(f[facet]))
            self.coords[facet] = labels
            idx = {v: i for i, v in enumerate(labels)}
            src = teachers if facet == "school" or "school" not in self.facets else \
                f.drop_duplicates("school").set_index("school")
            self.parents.append((facet, np.array([idx[v] for v in src.loc[child, facet]])))
            child = labels
        self.dims: list[DimensionData] = []
        for name in self.coords["dimension"]:
            d = f[f["dimension"] == name]
            y = d["score"].to_numpy(float)
            mean, sd = float(y.mean()), float(y.std(ddof=1)) if len(y) > 1 else 1.0
            sd = sd if sd > 0 else 1.0
            self.dims.append(DimensionData(
                name, (y - mean) / sd, mean, sd,
                np.array([code["rater"][v] for v in d["rater"]]),
                np.array([code["lesson"][v] for v in d["lesson"]]),
                np.array([code["teacher"][v] for v in d["teacher"]])))

    @property
    def config(self) -> dict[str, Any]:
        return {"model": "gstudy", "likelihood": self.likelihood, "facets": list(self.facets),
                "correlated": self.correlated, "components": self.components,
                "scale": {d.name: [d.mean, d.sd] for d in self.dims},
                "n_ratings": {d.name: len(d.y) for d in self.dims},
                "missing": self.ratings.missing, "notes": self.ratings.notes,
                "source": self.ratings.source}

    # -- PyMC -----------------------------------------------------------------------------
    def _sigma(self, comp: str):
        return self.priors[f"sigma_{comp}"].create_variable(f"sigma_{comp}")

    def _stacked(self) -> dict[str, np.ndarray]:
        """Every dimension's ratings in one set of arrays (group = dimension)."""
        return {k: np.concatenate([getattr(d, k) for d in self.dims])
                for k in ("y", "rater", "lesson", "teacher")} | {
            "group": np.concatenate([np.full(len(d.y), j) for j, d in enumerate(self.dims)])}

    def build_model(self) -> pm.Model:
        n_dim, n_rater = len(self.dims), len(self.coords["rater"])
        n_teacher, n_lesson = len(self.coords["teacher"]), len(self.coords["lesson"])
        a = self._stacked()
        dim_prior = dict(self.priors)
        for k, v in dim_prior.items():  # one value per dimension
            self.priors[k] = Prior(v.distribution, **v.parameters, dims="dimension")
        try:
            with pm.Model(coords=self.coords) as model:
                mu = self.priors["intercept"].create_variable("intercept")
                sig = {c: self._sigma(c) for c in self.components
                       if not (self.correlated and c == "teacher")}
                rater = pm.ZeroSumNormal("rater_effect", sigma=sig["rater"][:, None],
                                         dims=("dimension", "rater"), n_zerosum_axes=1)
                s2 = {c: sig[c] ** 2 for c in ("teacher", *self.facets) if c in sig}
                if self.likelihood == "student":
                    self._student(a, mu, rater, sig, s2, n_dim, n_lesson)
                elif self.correlated:
                    u = self._correlated_teacher(n_dim)
                    key = (a["group"] * n_rater + a["rater"]) * n_teacher + a["teacher"]
                    combo, design = np.unique(key, return_inverse=True)
                    j, rt = combo // (n_rater * n_teacher), combo % (n_rater * n_teacher)
                    f = mu[j] + rater[j, rt // n_teacher] + u[rt % n_teacher, j]
                    st = StackedStats.build(a["y"], a["group"], design, len(combo),
                                            a["lesson"], [], n_dim)
                    pm.Potential("marginal_loglik", stacked_marginal_logp(
                        st, f, j, sig["lesson"] ** 2, sig["residual"] ** 2, {}, pt,
                        pt_segment_sum))
                else:
                    design = a["group"] * n_rater + a["rater"]
                    st = StackedStats.build(a["y"], a["group"], design, n_dim * n_rater,
                                            a["lesson"], self.parents, n_dim)
                    f = (mu[:, None] + rater).flatten()
                    pm.Potential("marginal_loglik", stacked_marginal_logp(
                        st, f, np.arange(n_dim * n_rater) // n_rater, sig["lesson"] ** 2,
                        sig["residual"] ** 2, s2, pt, pt_segment_sum))
        finally:
            self.priors.update(dim_prior)
        self.model = model
        return model

    def _student(self, a, mu, rater, sig, s2, n_dim: int, n_lesson: int) -> None:
        nu = 2.0 + self.priors["nu_minus_2"].create_variable("nu_minus_2")
        b = pm.Flat("lesson_effect", dims=("dimension", "lesson"))
        # The prior over every (dimension, lesson), rated in that dimension or not.
        grid_group = np.repeat(np.arange(n_dim), n_lesson)
        grid = StackedStats.build(np.zeros(n_dim * n_lesson), grid_group,
                                  np.zeros(n_dim * n_lesson, dtype=np.int64), 1,
                                  np.tile(np.arange(n_lesson), n_dim), self.parents, n_dim)
        pm.Potential("lesson_prior", stacked_prior_logp(
            b.flatten(), grid.cell_group, grid.parents, sig["lesson"] ** 2, s2, pt,
            pt_segment_sum))
        g = a["group"]
        pm.StudentT("score", nu=nu[g], mu=mu[g] + rater[g, a["rater"]] + b[g, a["lesson"]],
                    sigma=sig["residual"][g], observed=a["y"])

    def _correlated_teacher(self, n_dim: int):
        self.coords["dimension_bis"] = list(self.coords["dimension"])
        pm.Model.get_context().add_coord("dimension_bis", self.coords["dimension_bis"])
        sd_prior = self.priors["sigma_teacher"]
        params = {k: v for k, v in sd_prior.parameters.items() if not isinstance(v, Prior)}
        sd_dist = getattr(pm, sd_prior.distribution).dist(**params, size=n_dim)
        chol, corr, sds = pm.LKJCholeskyCov("teacher_chol", n=n_dim, eta=2.0, sd_dist=sd_dist,
                                            compute_corr=True)
        pm.Deterministic("sigma_teacher", sds, dims="dimension")
        pm.Deterministic("teacher_corr", corr, dims=("dimension", "dimension_bis"))
        z = pm.Normal("teacher_z", 0.0, 1.0, dims=("teacher", "dimension"))
        return pm.Deterministic("teacher_effect", pt.dot(z, chol.T), dims=("teacher",
                                                                          "dimension"))

    def fit(self, sampler: str = "nutpie", draws: int = 1000, tune: int = 1000, chains: int = 4,
            seed: int | None = 1, progressbar: bool = True,
            target_accept: float = TARGET_ACCEPT) -> xr.DataTree:
        if self.model is None:
            self.build_model()
        timing: dict = {}
        self.idata = sample(self.model, sampler=sampler, draws=draws, tune=tune, chains=chains,
                            seed=seed, progressbar=progressbar, target_accept=target_accept,
                            timing=timing)
        self.fit_config = {"sampler": sampler, "draws": draws, "tune": tune, "chains": chains,
                           "seed": seed, "target_accept": target_accept, "timing": timing}
        return self.idata

    # -- variance components on the score scale ---------------------------------------------
    def variances(self, finite: bool = False) -> xr.DataArray:
        """Draws of each component's variance (dims chain, draw, dimension, component), on the
        score scale. Finite-population: the rater component is the variance of the realised
        rater effects; the nested components have hundreds of levels and keep σ²."""
        post = self.idata["posterior"].to_dataset()
        scale = xr.DataArray([d.sd**2 for d in self.dims], dims="dimension",
                             coords={"dimension": self.coords["dimension"]})
        out = []
        for comp in self.components:
            s2 = post[f"sigma_{comp}"] ** 2
            if comp == "residual" and self.likelihood == "student":
                nu = 2.0 + post["nu_minus_2"]
                s2 = s2 * nu / (nu - 2.0)
            if finite and comp == "rater":
                eff = post["rater_effect"]
                s2 = (eff**2).sum("rater") / (eff.sizes["rater"] - 1)
            out.append((s2 * scale).drop_vars([c for c in s2.coords if c not in
                                               ("chain", "draw", "dimension")]))
        return xr.concat(out, dim=pd.Index(self.components, name="component"))
