"""The model half of the analysis frame: what every Bayesian model of the package shares.

A concrete model (``VariancePartitionModel``, ``GStudyModel``, …) says what is particular to it:

- ``kind`` (written into results files; the registry's key), ``data_class`` (the input data,
  with ``to_dataset``/``from_dataset``/``data_hash``) and ``data_group`` (its group in the file);
- ``options``: the constructor keywords besides data and priors, so the model can be rebuilt;
- ``make_default_priors()``: ``pymc_extras`` ``Prior`` objects, overridable by name;
- ``build_model()``: the PyMC model (no side effects on the object's priors or coords);
- ``sigma_components()``: component → σ prior name (what prior checks and power-scaling use),
  ``prior_scale``, ``aggregates()``, and ``pointwise_log_likelihood()`` where it exists.

This class supplies the rest once: prior resolution, ``fit`` with a ``SamplerConfig``,
``with_priors`` (the same model under other priors), the log prior of the σ's, and the results
file (``to_datatree`` / ``from_datatree``, with the data-hash check).
"""

from __future__ import annotations

import json
import time
from abc import ABC, abstractmethod
from typing import Any, ClassVar, Self

import numpy as np
import pandas as pd
import pymc as pm
import xarray as xr
from pymc_extras.prior import Prior

from .backend import sample
from .fast_sampler import enabled as fast_enabled
from .fast_sampler import sample_fast
from .options import NAMED_SETS, SELECTION, SamplerConfig
from .priors import priors_from_json, priors_to_json, resolve_priors
from .serialize import KIND_ATTR, ResultsFileError, provenance

SAMPLE_DIMS = ("chain", "draw")


def flat_draws(da: xr.DataArray) -> np.ndarray:
    """(chain, draw, …) → (draws, …)."""
    v = da.transpose(*SAMPLE_DIMS, ...).values
    return v.reshape(-1, *v.shape[2:])


def prior_scale_of(prior: Prior) -> float:
    """The scale a named set rescales: σ of a (Half)Normal/StudentT, the mean of an
    Exponential, β of a Gamma-like prior."""
    p = prior.parameters
    if "sigma" in p:
        return float(p["sigma"])
    if "lam" in p:
        return 1.0 / float(p["lam"])
    if "beta" in p:
        return float(p["beta"])
    return 1.0


def rescaled(prior: Prior, name: str, selection: bool = False) -> Prior | None:
    """A σ prior under the named set (None: unchanged)."""
    s = prior_scale_of(prior)
    return {"wide": Prior("HalfNormal", sigma=4 * s), "narrow": Prior("HalfNormal", sigma=s / 4),
            "exponential": Prior("Exponential", lam=1.0 / s),
            "halfstudentt": Prior("HalfStudentT", nu=3.0, sigma=s),
            "sceptical": Prior("HalfNormal", sigma=s / 4) if selection else None,
            }.get(name)


class BayesianModel(ABC):
    kind: ClassVar[str]
    data_class: ClassVar[type]
    data_group: ClassVar[str]
    # NUTS target acceptance when the sampler config leaves it open (SamplerConfig docs).
    default_target_accept: ClassVar[float] = 0.95
    # What the prior check's summed variances are the variance of (``prior_variances``).
    prior_total: ClassVar[str] = "Total error SD"

    def __init__(self, data: Any, priors: dict[str, Any] | None = None) -> None:
        self.data = data
        self.default_priors: dict[str, Prior] = self.make_default_priors()
        self.priors: dict[str, Prior] = resolve_priors(self.default_priors, priors)
        self.model: pm.Model | None = None
        self.idata: xr.DataTree | None = None
        self.fit_config: dict[str, Any] = {}

    # -- what a concrete model provides ----------------------------------------------------
    @property
    @abstractmethod
    def options(self) -> dict[str, Any]:
        """Constructor keywords besides data and priors (JSON-serialisable)."""

    @property
    @abstractmethod
    def config(self) -> dict[str, Any]:
        """A description of the fitted structure, for people and for the results file."""

    @abstractmethod
    def make_default_priors(self) -> dict[str, Prior]: ...

    @abstractmethod
    def build_model(self) -> pm.Model: ...

    @abstractmethod
    def sigma_components(self) -> dict[str, str]:
        """Variance component → the name of its σ prior, in reporting order."""

    @property
    def prior_scale(self) -> float:
        """The SD of the data the priors are written against (prior checks compare to it)."""
        return 1.0

    def aggregates(self) -> dict[str, tuple[str, ...]]:
        """Named sums of components reported beside them (none unless the model has some)."""
        return {}

    def sensitivity_priors(self) -> list[str]:
        """The priors power-scaling scales (posterior variables of the same names)."""
        return list(self.sigma_components().values())

    def prior_variances(self, n: int, rng: np.random.Generator) -> pd.DataFrame:
        """Draws of every component's variance from the priors alone (prior checks)."""
        out = {}
        for comp, name in self.sigma_components().items():
            prior = self.priors[name]
            dist = getattr(pm, prior.distribution).dist(**prior.parameters)
            out[comp] = pm.draw(dist, draws=n, random_seed=rng) ** 2
        return pd.DataFrame(out)

    def prior_set(self, name: str) -> tuple[dict[str, Any], dict[str, Any]]:
        """(prior overrides, option changes) that make the named prior set (``NAMED_SETS``)
        from this model's priors: every σ prior's scale × 4 / ÷ 4, or the same scale under
        another distribution; ``sceptical`` shrinks the σ's of what choosing an LLM or prompt
        changes (components in ``SELECTION``)."""
        if name not in NAMED_SETS:
            raise ValueError(f"unknown prior set '{name}' (named sets: {', '.join(NAMED_SETS)})")
        if name == "default":
            return {}, {}
        out = {}
        for comp, key in self.sigma_components().items():
            scaled = rescaled(self.priors[key], name, comp in SELECTION)
            if scaled is not None:
                out[key] = scaled
        return out, {}

    def prior_sets(self) -> tuple[str, ...]:
        """The named prior sets this model offers."""
        return NAMED_SETS

    def with_options(self, priors: dict[str, Any] | None = None, **changes: Any) -> Self:
        """The same data under other options (starting from the new model's default priors,
        with ``priors`` on top); without changes, ``with_priors``."""
        if not changes:
            return self.with_priors(priors)
        return type(self)(self.data, priors=priors, **(self.options | changes))

    def pointwise_log_likelihood(self, posterior: xr.Dataset) -> xr.DataArray:
        """(chain, draw, node) log likelihood of independent parts of the data, summing to the
        model's likelihood; what power-scaling and LOO-style tools need."""
        raise NotImplementedError(f"{type(self).__name__} has no pointwise log likelihood "
                                  "in this configuration")

    def file_attrs(self) -> dict[str, str]:
        """Extra root attributes for the results file (kept for readers of older files)."""
        return {}

    # -- shared -----------------------------------------------------------------------------
    def with_priors(self, overrides: dict[str, Any] | None) -> Self:
        """The same model (data and options) with ``overrides`` on top of its current priors."""
        return type(self)(self.data, priors=dict(self.priors) | dict(overrides or {}),
                          **self.options)

    def fit(self, sampling: SamplerConfig | None = None, **options: Any) -> xr.DataTree:
        """Sample the posterior (``SamplerConfig`` fields as keywords, or a config); returns
        and keeps an ArviZ DataTree."""
        cfg = SamplerConfig.make(sampling, **options).resolved(self.default_target_accept)
        model = self.model or self.build_model()
        t0 = time.perf_counter()
        fast = self.fast_path() if cfg.sampler == "nutpie" and fast_enabled() else None
        # With the fast path, "compile" is packing the data and loading the cached kernels.
        timing: dict[str, Any] = {"compile_s": time.perf_counter() - t0} if fast else {}
        if fast is not None:
            idata = sample_fast(*fast, model=model, config=cfg, timing=timing)
        else:
            idata = sample(model, cfg, timing=timing)
        self.fit_config = {"sampler": cfg.sampler, "draws": cfg.draws, "tune": cfg.tune,
                           "chains": cfg.chains, "seed": cfg.seed,
                           "target_accept": cfg.target_accept, "timing": timing}
        self.idata = self.after_sampling(idata, cfg)
        return self.idata

    def fast_path(self) -> tuple[Any, tuple] | None:
        """(packed model, its compiled logp and expand kernels) when this model has a
        compile-free form for nutpie (``fast_sampler.py``); None: compile the PyMC graph."""
        return None

    def after_sampling(self, idata: xr.DataTree, cfg: SamplerConfig) -> xr.DataTree:
        """What a model does with its draws before they are kept (default: nothing); may add
        to ``fit_config``."""
        return idata

    @property
    def posterior(self) -> xr.Dataset:
        if self.idata is None or "posterior" not in self.idata.children:
            raise RuntimeError("fit the model (or load a fitted one) first")
        return self.idata["posterior"].to_dataset()

    @property
    def sample_stats(self) -> xr.Dataset | None:
        if self.idata is None or "sample_stats" not in self.idata.children:
            return None
        return self.idata["sample_stats"].to_dataset()

    def log_prior(self, posterior: xr.Dataset, names: list[str] | None = None) -> xr.Dataset:
        """Log density of each prior in ``names`` (default: ``sensitivity_priors``) at each
        draw (constrained scale)."""
        out = xr.Dataset()
        for name in names or self.sensitivity_priors():
            prior = self.priors[name]
            dist = getattr(pm, prior.distribution).dist(**prior.parameters)
            v = posterior[name]
            out[name] = v.copy(data=pm.logp(dist, np.asarray(v.values)).eval())
        return out

    # -- results file -----------------------------------------------------------------------
    def to_datatree(self) -> xr.DataTree:
        groups: dict[str, xr.Dataset] = {}
        if self.idata is not None:
            for name in ("posterior", "sample_stats"):
                if name in self.idata.children:
                    groups[name] = self.idata[name].to_dataset()
        groups[self.data_group] = self.data.to_dataset()
        tree = xr.DataTree.from_dict(groups)
        tree.attrs = {KIND_ATTR: self.kind, "options": json.dumps(self.options),
                      "model_config": json.dumps(self.config),
                      "priors": priors_to_json(self.priors), "data_hash": self.data.data_hash(),
                      "fit_config": json.dumps(self.fit_config),
                      "seed": str(self.fit_config.get("seed"))} | self.file_attrs() | provenance()
        return tree

    @classmethod
    def from_datatree(cls, tree: xr.DataTree, source: str = "the file") -> Self:
        """Rebuild the model (data, options, priors) and attach its posterior; a file whose
        data do not match its stored hash is refused."""
        attrs = tree.attrs
        if cls.data_group not in tree.children:
            raise ResultsFileError(f"{source}: the '{cls.data_group}' group with the input data "
                                   "is missing, so the model cannot be rebuilt")
        if "data_hash" not in attrs:
            raise ResultsFileError(f"{source}: written without a data hash (by an older "
                                   "misalign); refit to get a file that can be checked")
        data = cls.data_class.from_dataset(tree[cls.data_group].to_dataset())
        if data.data_hash() != attrs["data_hash"]:
            raise ResultsFileError(
                f"{source}: the data stored in the file do not match its data hash: the file "
                "was changed after misalign wrote it, or is damaged. Refit from the original "
                "data.")
        model = cls(data, priors=priors_from_json(attrs["priors"]),
                    **json.loads(attrs.get("options", "{}")))
        model.fit_config = json.loads(attrs.get("fit_config", "{}"))
        model.build_model()
        groups = {g: tree[g].to_dataset() for g in ("posterior", "sample_stats")
                  if g in tree.children}
        model.idata = xr.DataTree.from_dict(groups) if groups else None
        return model
