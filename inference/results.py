"""Fit the E1 model end to end and keep what a user needs in one NetCDF results file.

The file is the model's own NetCDF form (posterior, sample stats, data, config, priors, versions,
data hash, seed; see ``misalign.models.serialize``) plus the groups ``shares`` (per-draw shares
with named ``component``/``aggregate`` coords) and ``diagnostics`` (the gate table).
``arviz.from_netcdf`` opens it; ``load_results`` rebuilds the model as well.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import xarray as xr

from misalign.data import MisalignmentData
from misalign.models import VariancePartitionModel
from misalign.models.backend import TARGET_ACCEPT
from misalign.models.serialize import read_datatree, write_datatree

from .diagnostics import GateResult, diagnostics_gate
from .shares import compute_shares, share_table

NU_WARN = 4.0


def model_notes(model: VariancePartitionModel) -> list[str]:
    """Caveats about the fitted model that are not convergence failures."""
    notes = list(model.config.get("warnings", []))
    post = model.idata["posterior"] if model.idata is not None else None
    if model.likelihood == "student" and post is not None and "nu_minus_2" in post:
        nu = 2.0 + float(post["nu_minus_2"].median())
        if nu < NU_WARN:
            notes.append(
                f"Student-t ν ≈ {nu:.2f}: the residual variance σ²ν/(ν−2) is dominated by the "
                "tails and so is the residual share. Rounded ordinal scores often do this (many "
                "identical residuals plus a few large ones); prefer --likelihood gaussian for "
                "the variance partition and use student to check robustness to outliers.")
    return notes


@dataclass
class E1Results:
    model: VariancePartitionModel
    shares: xr.Dataset
    gate: GateResult

    @property
    def notes(self) -> list[str]:
        return model_notes(self.model)

    @property
    def table(self) -> pd.DataFrame:
        return share_table(self.shares)

    def to_datatree(self) -> xr.DataTree:
        tree = self.model.to_datatree()
        groups = {node.path: node.to_dataset(inherit=False) for node in tree.subtree}
        groups["/shares"] = self.shares
        diag = xr.Dataset.from_dataframe(self.gate.table.reset_index(drop=True)
                                         .rename_axis("row"))
        diag.attrs = {"gate": json.dumps(self.gate.to_dict())}
        groups["/diagnostics"] = diag
        out = xr.DataTree.from_dict(groups)
        out.attrs = dict(tree.attrs) | {"gate_passed": int(self.gate.passed)}
        return out

    def save(self, path: str | Path) -> Path:
        return write_datatree(self.to_datatree(), path)


def fit_e1(data: MisalignmentData, likelihood: str = "gaussian", priors: dict | None = None,
           sampler: str = "nutpie", draws: int = 1000, tune: int = 1000, chains: int = 4,
           seed: int | None = None, progressbar: bool = True,
           target_accept: float = TARGET_ACCEPT) -> E1Results:
    """Build, sample, compute the shares and run the diagnostics gate."""
    model = VariancePartitionModel(data, likelihood=likelihood, priors=priors)
    model.build_model()
    model.fit(sampler=sampler, draws=draws, tune=tune, chains=chains, seed=seed,
              progressbar=progressbar, target_accept=target_accept)
    return _results(model, compute_shares(model))


def load_results(path: str | Path) -> E1Results:
    """Read a results file: the rebuilt model with its posterior, the shares and the gate."""
    from misalign.models.serialize import model_from_datatree

    tree = read_datatree(path)
    model = model_from_datatree(tree)
    if "shares" in tree.children:
        shares = tree["shares"].to_dataset()
    else:
        shares = compute_shares(model)
    return _results(model, shares)


def _results(model: VariancePartitionModel, shares: xr.Dataset) -> E1Results:
    """Bundle a fitted model with its shares and the gate run on them."""
    idata = model.idata
    stats = idata["sample_stats"].to_dataset() if idata is not None and \
        "sample_stats" in idata.children else None
    return E1Results(model=model, shares=shares, gate=diagnostics_gate(shares, stats))
