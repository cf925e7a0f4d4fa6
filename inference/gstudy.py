"""G-study results: variance shares per dimension, the diagnostics gate, the decision study,
the noise ceiling, and the self-describing NetCDF file (same convention as E1: posterior,
sample stats, shares, the data, config, priors, versions)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from misalign.data.experts import COLUMNS, ExpertRatings
from misalign.models.gstudy import GStudyModel
from misalign.models.priors import priors_from_json, priors_to_json
from misalign.models.serialize import package_versions, read_datatree, write_datatree

from .diagnostics import GateResult, diagnostics_gate
from .reliability import decision_study, noise_ceiling, smallest_design
from .shares import HDI_PROB, SAMPLE_DIMS

DATA_GROUP = "expert_data"
SHOWN_DESIGNS = ((1, 4, 1), (2, 4, 1), (4, 4, 1), (4, 4, 2), (8, 4, 1))


def _hdi(da: xr.DataArray, prob: float = HDI_PROB) -> xr.DataArray:
    import arviz as az

    return az.hdi(da, prob=prob, dim=list(SAMPLE_DIMS))


@dataclass
class GStudyResults:
    model: GStudyModel
    variances: xr.DataArray  # chain, draw, dimension, component (score scale)
    shares: xr.Dataset  # superpopulation, finite_population
    gate: GateResult
    dstudy: xr.Dataset = field(default=None)  # mean / lower / upper per design

    @property
    def dimensions(self) -> list[str]:
        return list(self.variances["dimension"].values)

    def table(self, prob: float = HDI_PROB) -> pd.DataFrame:
        """One row per dimension × component: variance and both shares with HDIs."""
        rows = []
        v_m, v_h = self.variances.mean(SAMPLE_DIMS), _hdi(self.variances, prob)
        h = {k: _hdi(self.shares[k], prob) for k in self.shares.data_vars}
        m = {k: self.shares[k].mean(SAMPLE_DIMS) for k in self.shares.data_vars}
        for d in self.dimensions:
            for c in self.variances["component"].values:
                sel = {"dimension": d, "component": c}
                row = {"dimension": d, "component": c,
                       "variance": float(v_m.sel(sel)),
                       "variance_lower": float(v_h.sel(sel).sel(ci_bound="lower")),
                       "variance_upper": float(v_h.sel(sel).sel(ci_bound="upper"))}
                for k, short in (("superpopulation", "super"), ("finite_population", "finite")):
                    row[f"{short}_mean"] = float(m[k].sel(sel))
                    row[f"{short}_lower"] = float(h[k].sel(sel).sel(ci_bound="lower"))
                    row[f"{short}_upper"] = float(h[k].sel(sel).sel(ci_bound="upper"))
                rows.append(row)
        return pd.DataFrame(rows)

    def decision_table(self, designs=SHOWN_DESIGNS) -> pd.DataFrame:
        rows = []
        for d in self.dimensions:
            for n, m, r in designs:
                sel = {"dimension": d, "n_lessons": n, "n_segments": m, "n_raters": r}
                row = {"dimension": d, "n_lessons": n, "n_segments": m, "n_raters": r}
                for k in ("generalizability", "dependability"):
                    for stat in ("mean", "lower", "upper"):
                        row[f"{k}_{stat}"] = float(self.dstudy[f"{k}_{stat}"].sel(sel))
                rows.append(row)
        return pd.DataFrame(rows)

    def smallest_designs(self, target: float = 0.8) -> dict[str, dict]:
        return {d: {k: smallest_design(self.dstudy[f"{k}_mean"].sel(dimension=d), target)
                    for k in ("generalizability", "dependability")} for d in self.dimensions}

    def noise_ceiling(self, level: str, dimension: str, n_raters: int = 1, n_segments: int = 4,
                      n_lessons: int = 4) -> xr.DataArray:
        """Draws of the ceiling on any rater's correlation with the expert reference."""
        return noise_ceiling(self.variances.sel(dimension=dimension), level, n_raters,
                             n_segments, n_lessons)

    def save(self, path: str | Path) -> Path:
        m = self.model
        groups = {g: m.idata[g].to_dataset() for g in ("posterior", "sample_stats")
                  if g in m.idata.children}
        groups["shares"] = self.shares
        groups["variances"] = self.variances.to_dataset(name="variance")
        groups["decision_study"] = self.dstudy
        groups[DATA_GROUP] = _frame_to_dataset(m.ratings.frame)
        tree = xr.DataTree.from_dict(groups)
        tree.attrs = {"misalign_model": "GStudyModel", "model_config": json.dumps(m.config),
                      "priors": priors_to_json(m.priors), "fit_config": json.dumps(m.fit_config),
                      "gate": json.dumps(self.gate.to_dict()),
                      "package_versions": json.dumps(package_versions()),
                      "created_at": datetime.now(UTC).isoformat(timespec="seconds")}
        return write_datatree(tree, path)


def _frame_to_dataset(frame: pd.DataFrame) -> xr.Dataset:
    ds = xr.Dataset()
    for col in COLUMNS[:-1]:
        codes, labels = pd.factorize(frame[col], sort=True)
        ds[col] = xr.DataArray(codes.astype(np.int32), dims=("rating",))
        ds.coords[f"{col}_labels"] = xr.DataArray(np.asarray(labels, dtype=object),
                                                  dims=(f"{col}_labels",))
    ds["score"] = xr.DataArray(frame["score"].to_numpy(float), dims=("rating",))
    return ds


def _dataset_to_frame(ds: xr.Dataset) -> pd.DataFrame:
    out = {}
    for col in COLUMNS[:-1]:
        labels = np.asarray(ds[f"{col}_labels"].values, dtype=object).astype(str)
        labels = np.where(labels == "nan", "", labels)
        out[col] = labels[ds[col].values]
    out["score"] = ds["score"].values
    return pd.DataFrame(out)


def _results(model: GStudyModel) -> GStudyResults:
    sp, fp = model.variances(finite=False), model.variances(finite=True)
    shares = xr.Dataset({"superpopulation": sp / sp.sum("component"),
                         "finite_population": fp / fp.sum("component")})
    stacked = shares.stack(share=("dimension", "component"))
    labels = [f"{d}/{c}" for d, c in stacked["share"].values]
    stacked = stacked.drop_vars(["share", "dimension", "component"]).assign_coords(share=labels)
    gate = diagnostics_gate(stacked, model.idata["sample_stats"].to_dataset()
                            if "sample_stats" in model.idata.children else None,
                            share_vars=("superpopulation", "finite_population"))
    ds = decision_study(sp)
    summary = xr.Dataset()
    for k in ds.data_vars:
        h = _hdi(ds[k])
        summary[f"{k}_mean"] = ds[k].mean(SAMPLE_DIMS)
        summary[f"{k}_lower"] = h.sel(ci_bound="lower", drop=True)
        summary[f"{k}_upper"] = h.sel(ci_bound="upper", drop=True)
    return GStudyResults(model, sp, shares, gate, summary)


def fit_gstudy(ratings: ExpertRatings, facets: tuple[str, ...] = (), likelihood: str = "gaussian",
               correlated: bool = False, priors: dict | None = None, sampler: str = "nutpie",
               draws: int = 1000, tune: int = 1000, chains: int = 4, seed: int | None = 1,
               progressbar: bool = True, target_accept: float = 0.95) -> GStudyResults:
    model = GStudyModel(ratings, facets=facets, likelihood=likelihood, correlated=correlated,
                        priors=priors)
    model.fit(sampler=sampler, draws=draws, tune=tune, chains=chains, seed=seed,
              progressbar=progressbar, target_accept=target_accept)
    return _results(model)


def load_gstudy(path: str | Path) -> GStudyResults:
    """Rebuild the model (data, priors, options) and the results from a file."""
    tree = read_datatree(path)
    attrs = tree.attrs
    if attrs.get("misalign_model") != "GStudyModel":
        raise ValueError("this file holds no misalign G-study")
    cfg = json.loads(attrs["model_config"])
    frame = _dataset_to_frame(tree[DATA_GROUP].to_dataset())
    ratings = ExpertRatings(frame, cfg["source"], cfg.get("missing", {}), cfg.get("notes", []))
    model = GStudyModel(ratings, facets=tuple(cfg["facets"]), likelihood=cfg["likelihood"],
                        correlated=cfg["correlated"], priors=priors_from_json(attrs["priors"]))
    model.fit_config = json.loads(attrs.get("fit_config", "{}"))
    model.idata = xr.DataTree.from_dict({g: tree[g].to_dataset() for g in
                                         ("posterior", "sample_stats") if g in tree.children})
    return _results(model)
