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

from .base import BayesianModel, flat_draws
from .likelihood import CellLeaves
from .options import check_likelihood
from .recursion import pt_segment_sum
from .spec import zero_sum_basis
from .stacked import StackedStats, stacked_marginal_logp, stacked_prior_logp

FACETS = ("school", "district")


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


class GStudyModel(BayesianModel):
    kind = "gstudy"
    data_class = ExpertRatings
    data_group = "expert_data"
    # No few-level factors here: 0.95 doubled the leapfrog steps for nothing.
    default_target_accept = 0.8

    def __init__(self, ratings: ExpertRatings, facets: tuple[str, ...] | list[str] = (),
                 likelihood: str = "gaussian", correlated: bool = False,
                 priors: dict[str, Any] | None = None) -> None:
        check_likelihood(likelihood)
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
        self._prepare()
        super().__init__(ratings, priors)

    @property
    def options(self) -> dict[str, Any]:
        return {"facets": list(self.facets), "likelihood": self.likelihood,
                "correlated": self.correlated}

    def make_default_priors(self) -> dict[str, Prior]:
        return gstudy_default_priors(self.components, self.likelihood == "student")

    def sigma_components(self) -> dict[str, str]:
        return {c: f"sigma_{c}" for c in self.components}

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
    def _per_dimension(self, name: str):
        """The prior ``name`` as one variable per dimension."""
        p = self.priors[name]
        return Prior(p.distribution, **p.parameters, dims="dimension").create_variable(name)

    def _sigma(self, comp: str):
        return self._per_dimension(f"sigma_{comp}")

    def _stacked(self) -> dict[str, np.ndarray]:
        """Every dimension's ratings in one set of arrays (group = dimension)."""
        return {k: np.concatenate([getattr(d, k) for d in self.dims])
                for k in ("y", "rater", "lesson", "teacher")} | {
            "group": np.concatenate([np.full(len(d.y), j) for j, d in enumerate(self.dims)])}

    def build_model(self) -> pm.Model:
        n_dim, n_rater = len(self.dims), len(self.coords["rater"])
        n_teacher, n_lesson = len(self.coords["teacher"]), len(self.coords["lesson"])
        a = self._stacked()
        coords = dict(self.coords)
        if self.correlated:
            coords["dimension_bis"] = list(self.coords["dimension"])
        with pm.Model(coords=coords) as model:
            mu = self._per_dimension("intercept")
            sig = {c: self._sigma(c) for c in self.components
                   if not (self.correlated and c == "teacher")}
            rater = self._rater_effect(sig["rater"])
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
        self.model = model
        return model

    def _rater_effect(self, sigma):
        """Zero-sum over raters within each dimension: an orthonormal basis times N(0, σ_d)
        coordinates, the distribution of ``pm.ZeroSumNormal`` (as E1's effects, and what the
        compiled fast path samples)."""
        n = len(self.coords["rater"])
        pm.modelcontext(None).add_coord("rater_basis", [str(i + 1) for i in range(n - 1)])
        z = pm.Normal("rater_effect_free", 0.0, sigma[:, None], dims=("dimension",
                                                                      "rater_basis"))
        return pm.Deterministic("rater_effect", pt.dot(z, zero_sum_basis([n]).T),
                                dims=("dimension", "rater"))

    def fast_path(self) -> tuple[Any, tuple] | None:
        """The compiled kernels (fast_gstudy.py) for the independent Gaussian G-study."""
        if self.likelihood != "gaussian" or self.correlated:
            return None
        from .fast_gstudy import gstudy_fast_path

        return gstudy_fast_path(self)

    def _student(self, a, mu, rater, sig, s2, n_dim: int, n_lesson: int) -> None:
        nu = 2.0 + self._per_dimension("nu_minus_2")
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

    # -- sensitivity ------------------------------------------------------------------------
    def pointwise_log_likelihood(self, posterior: xr.Dataset, chunk: int = 250
                                 ) -> xr.DataArray:
        """(chain, draw, dimension_<top>) log likelihood per (dimension, top-level node):
        teachers, or schools/districts when those facets are fitted. Given the parameters these
        are independent, so they factorise the stacked marginal likelihood exactly."""
        if self.likelihood != "gaussian" or self.correlated:
            raise NotImplementedError("power-scaling is written for the independent Gaussian "
                                      "G-study (not --correlated or --likelihood student)")
        a = self._stacked()
        n_dim, n_rater = len(self.dims), len(self.coords["rater"])
        design = a["group"] * n_rater + a["rater"]
        st = StackedStats.build(a["y"], a["group"], design, n_dim * n_rater, a["lesson"],
                                self.parents, n_dim)
        n_keys = int(a["lesson"].max()) + 1
        _, cell = np.unique(a["group"].astype(np.int64) * n_keys + a["lesson"],
                            return_inverse=True)
        levels = [(name, idx) for name, idx, _ in st.parents]
        leaves = CellLeaves.from_arrays(a["y"], design, n_dim * n_rater, cell, levels)
        f = (flat_draws(posterior["intercept"])[:, :, None]
             + flat_draws(posterior["rater_effect"])).reshape(-1, n_dim * n_rater)
        s2 = {c: flat_draws(posterior[f"sigma_{c}"]) ** 2 for c in self.components}
        group = {name: grp for name, _, grp in st.parents}
        return leaves.logp_draws(f, s2["lesson"][:, st.cell_group],
                                 s2["residual"][:, st.cell_group],
                                 {name: s2[name][:, group[name]] for name, _ in levels},
                                 posterior, f"dimension_{levels[-1][0]}", chunk)
