"""The results half of the analysis frame: a fitted model plus what is reported from it.

A concrete analysis (``E1Results``, ``GStudyResults``, …) names its ``model_class`` and the
groups of derived quantities it writes (``derived_groups``), and implements
``compute_derived`` (posterior → those groups), ``gate_variables`` (what the diagnostics gate
checks), ``sections`` (its report: sentences, tables, figures) and ``quantities`` (the rows a
prior-sensitivity sweep compares across prior sets). This class supplies the rest once: ``fit``,
``refit`` under other priors, the gate, ``to_dict`` (``--json``), and the results file
(``save`` / ``load``, through the model's serialiser).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import warnings
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar, Self

import pandas as pd
import xarray as xr

from misalign.models.base import BayesianModel
from misalign.models.options import SamplerConfig
from misalign.models.serialize import check_kind, read_datatree, write_datatree

from .common_sections import (
    SENSITIVITY_GROUP,
    diagnostics_section,
    provenance_section,
    sensitivity_section,
)
from .diagnostics import GateResult, diagnostics_gate
from .sections import Section, TableSpec, plain

_SAMPLER_OPTIONS = {f.name for f in dataclasses.fields(SamplerConfig)}
# Where the package's code lives (one folder installed, five in an editable source tree).
_PACKAGE_DIRS = tuple(
    os.path.dirname(importlib.util.find_spec(f"misalign{p}").origin) + os.sep
    for p in ("", ".data", ".models", ".inference", ".reports"))


class AnalysisResults(ABC):
    model_class: ClassVar[type[BayesianModel]]
    derived_groups: ClassVar[tuple[str, ...]]

    def __init__(self, model: BayesianModel, derived: dict[str, xr.Dataset] | None = None
                 ) -> None:
        self.model = model
        self.derived = dict(derived) if derived is not None else self.compute_derived(model)
        self.gate: GateResult = diagnostics_gate(self.gate_variables(), model.sample_stats)
        self.path: Path | None = None  # the results file it was saved to or loaded from
        self.attrs: dict[str, Any] = {}  # that file's root attributes (versions, date, …)
        # Recorded by ``misalign sensitivity``: "powerscale" and/or "sweep" tables.
        self.sensitivity: dict[str, xr.Dataset] = {}

    # -- what a concrete analysis provides ------------------------------------------------
    @classmethod
    @abstractmethod
    def compute_derived(cls, model: BayesianModel) -> dict[str, xr.Dataset]:
        """The reported quantities per draw (and their summaries), by results-file group."""

    @abstractmethod
    def gate_variables(self) -> xr.Dataset:
        """The per-draw quantities the diagnostics gate checks (every reported number)."""

    @abstractmethod
    def sections(self) -> list[Section]:
        """What this analysis contributes to the terminal summary and the report."""

    @abstractmethod
    def quantities(self) -> pd.DataFrame:
        """Rows ``quantity, mean, lower, upper, finite_mean`` compared across prior sets."""

    def sensitivity_quantities(self) -> xr.Dataset:
        """What power-scaling checks, per draw (default: the model's σ's; an analysis that
        reports more overrides it with every reported quantity)."""
        post = self.model.posterior
        return post[list(self.model.sigma_components().values())]

    @property
    def notes(self) -> list[str]:
        """Caveats about the fit that are not convergence failures."""
        return list(self.model.config.get("warnings", []))

    # -- shared ---------------------------------------------------------------------------
    @property
    def kind(self) -> str:
        return self.model_class.kind

    @classmethod
    def fit(cls, data: Any, *, priors: dict[str, Any] | None = None,
            sampling: SamplerConfig | None = None, **options: Any) -> Self:
        """Build the model on ``data``, sample, and compute the reported quantities.
        ``options``: the model's own options and any ``SamplerConfig`` field."""
        sampler = {k: options.pop(k) for k in list(options) if k in _SAMPLER_OPTIONS}
        model = cls.model_class(data, priors=priors, **options)
        model.fit(SamplerConfig.make(sampling, **sampler))
        res = cls(model)
        for note in res.notes:  # once, pointing at the caller's line, not into the package
            warnings.warn(note, UserWarning, skip_file_prefixes=_PACKAGE_DIRS)
        return res

    def refit(self, priors: dict[str, Any] | None = None,
              sampling: SamplerConfig | None = None, options: dict[str, Any] | None = None,
              **sampler: Any) -> Self:
        """The same analysis under other priors (overrides on top of the current ones), or
        other model options (then from that model's defaults)."""
        model = self.model.with_options(priors, **(options or {}))
        model.fit(SamplerConfig.make(sampling, **sampler))
        return type(self)(model)

    def tables(self) -> list[TableSpec]:
        return [t for s in self.sections() for t in s.tables]

    def report_sections(self) -> list[Section]:
        """Everything the report shows: the analysis's own sections, then prior sensitivity
        (when recorded), diagnostics and provenance."""
        extra = [sensitivity_section(self), diagnostics_section(self), provenance_section(self)]
        return self.sections() + [s for s in extra if s is not None]

    @property
    def headline(self) -> str:
        """The analysis's main finding in one plain sentence (terminal and report alike)."""
        return next((plain(s.headline).strip() for s in self.sections() if s.headline), "")

    def record_sensitivity(self, powerscale: pd.DataFrame | None = None,
                           sweep: pd.DataFrame | None = None, threshold: float = 0.05) -> None:
        """Keep prior-sensitivity tables with the results (written by ``save``)."""
        if powerscale is not None:
            ds = xr.Dataset.from_dataframe(powerscale.rename_axis("quantity"))
            ds.attrs["threshold"] = threshold
            self.sensitivity["powerscale"] = ds
        if sweep is not None:
            self.sensitivity["sweep"] = xr.Dataset.from_dataframe(
                sweep.assign(gate_passed=sweep["gate_passed"].astype(int))
                .set_index(["prior_set", "quantity"]))

    def to_dict(self) -> dict[str, Any]:
        """Everything ``--json`` prints: the tables' numbers, the gate, config and notes."""
        out = {"kind": self.kind, "data": self.model.data.summary(),
               "config": self.model.config, "fit": dict(self.model.fit_config),
               "gate": self.gate.to_dict() | {"message": self.gate.message()},
               "notes": self.notes}
        for t in self.tables():
            out[t.key] = t.frame.to_dict(orient="records")
        return out

    # -- results file -----------------------------------------------------------------------
    def to_datatree(self) -> xr.DataTree:
        tree = self.model.to_datatree()
        groups = {node.path: node.to_dataset(inherit=False) for node in tree.subtree}
        for name, ds in self.derived.items():
            groups[f"/{name}"] = ds
        table = self.gate.table
        quantity = (table["variable"] + "[" + table["name"] + "]").tolist()
        diag = xr.Dataset.from_dataframe(table.drop(columns=["variable", "name"]).set_axis(
            pd.Index(quantity, name="quantity")))
        groups["/diagnostics"] = diag
        for name, ds in self.sensitivity.items():
            groups[f"/{SENSITIVITY_GROUP}/{name}"] = ds
        out = xr.DataTree.from_dict(groups)
        # A file rewritten later (e.g. to record sensitivity) keeps when and with what the
        # results were made.
        kept = {k: self.attrs[k] for k in ("created_at", "package_versions") if k in self.attrs}
        out.attrs = dict(tree.attrs) | kept | {"gate_passed": int(self.gate.passed),
                                               "gate": json.dumps(self.gate.to_dict())}
        return out

    def save(self, path: str | Path) -> Path:
        """Write the results file atomically (NetCDF; ``arviz.from_netcdf`` opens it)."""
        tree = self.to_datatree()
        self.path = write_datatree(tree, path, compress=(self.model_class.data_group,))
        self.attrs = dict(tree.attrs)
        return self.path

    @classmethod
    def from_datatree(cls, tree: xr.DataTree, source: str = "the file") -> Self:
        model = cls.model_class.from_datatree(tree, source)
        stored = {g: tree[g].to_dataset() for g in cls.derived_groups if g in tree.children}
        res = cls(model, stored if len(stored) == len(cls.derived_groups) else None)
        res.attrs = dict(tree.attrs)
        if SENSITIVITY_GROUP in tree.children:
            res.sensitivity = {k: v.to_dataset()
                               for k, v in tree[SENSITIVITY_GROUP].children.items()}
        return res

    @classmethod
    def load(cls, path: str | Path) -> Self:
        """Read a results file of this analysis (``misalign.load`` reads any kind)."""
        tree = read_datatree(path)
        check_kind(tree, cls.model_class.kind, str(path))
        res = cls.from_datatree(tree, str(path))
        res.path = Path(path)
        return res

    def __repr__(self) -> str:
        return (f"<{type(self).__name__} ({self.kind}): {self.model.data.summary()}; gate "
                f"{'passed' if self.gate.passed else 'FAILED'}>")
