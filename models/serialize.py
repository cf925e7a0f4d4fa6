"""The model's NetCDF form: posterior plus everything needed to rebuild the model.

Root attributes carry the package versions, the model config, the priors (JSON), the error-scale
choice, a hash of the data and the fit settings; the group ``misalignment_data`` carries the
misalignment table itself (integer codes with their labels), so ``load`` needs no other file.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from misalign.data import MisalignmentData
from misalign.data.atomic import atomic_write
from misalign.data.categorical import sorted_codes
from misalign.data.misalignment import FRAME_COLUMNS

from .priors import priors_from_json, priors_to_json

ENGINE = "netcdf4"
DATA_GROUP = "misalignment_data"
_STRING_COLUMNS = [c for c in FRAME_COLUMNS if c not in ("score", "reference", "error")]
_VERSIONED = ("misalign", "pymc", "pytensor", "arviz", "arviz-base", "arviz-stats", "nutpie",
              "pymc-extras", "numpy", "xarray", "pandas")


def package_versions() -> dict[str, str]:
    out = {}
    for name in _VERSIONED:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out


def frame_to_dataset(frame: pd.DataFrame) -> xr.Dataset:
    ds = xr.Dataset()
    for col in _STRING_COLUMNS:
        codes, labels = sorted_codes(frame[col])
        ds[col] = xr.DataArray(codes, dims=("rating",))
        ds.coords[f"{col}_labels"] = xr.DataArray(np.asarray(labels, dtype=object),
                                                  dims=(f"{col}_labels",))
    for col in ("score", "reference", "error"):
        ds[col] = xr.DataArray(frame[col].to_numpy(dtype=np.float64), dims=("rating",))
    return ds


def dataset_to_frame(ds: xr.Dataset) -> pd.DataFrame:
    out = {}
    for col in _STRING_COLUMNS:
        labels = np.asarray(ds[f"{col}_labels"].values, dtype=object).astype(str)
        labels = np.where(labels == "nan", "", labels) if len(labels) else labels
        if not len(labels):
            labels, codes = np.array([""], dtype=object), np.zeros(ds.sizes["rating"], np.int32)
        else:
            codes = ds[col].values
        out[col] = pd.Categorical.from_codes(codes, categories=pd.Index(labels, dtype=object))
    for col in ("score", "reference", "error"):
        out[col] = ds[col].values
    return pd.DataFrame(out)[FRAME_COLUMNS]


def model_to_datatree(model) -> xr.DataTree:
    groups: dict[str, xr.Dataset] = {}
    if model.idata is not None:
        for name in ("posterior", "sample_stats"):
            if name in model.idata.children:
                groups[name] = model.idata[name].to_dataset()
    data_ds = frame_to_dataset(model.data.frame)
    data_ds.attrs = {"task_scale": json.dumps(model.data.task_scale),
                     "error_scale": model.data.error_scale,
                     "n_experts": model.data.n_experts,
                     "n_expert_ratings": model.data.n_expert_ratings}
    groups[DATA_GROUP] = data_ds
    tree = xr.DataTree.from_dict(groups)
    tree.attrs = {
        "misalign_model": "VariancePartitionModel",
        "model_config": json.dumps(model.config),
        "priors": priors_to_json(model.priors),
        "likelihood": model.likelihood,
        "error_scale": model.data.error_scale,
        "data_hash": model.data.data_hash(),
        "fit_config": json.dumps(model.fit_config),
        "seed": str(model.fit_config.get("seed")),
        "package_versions": json.dumps(package_versions()),
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    return tree


def _clean_for_netcdf(tree: xr.DataTree) -> xr.DataTree:
    """NetCDF cannot hold object columns of None (nutpie's divergence messages) or bool attrs."""
    out = {}
    for node in tree.subtree:
        ds = node.to_dataset(inherit=False)
        drop = [v for v in ds.data_vars if ds[v].dtype == object and v.startswith("divergence_")]
        ds = ds.drop_vars(drop)
        ds.attrs = {k: (json.dumps(v) if isinstance(v, (dict, list, bool)) or v is None else v)
                    for k, v in ds.attrs.items()}
        out[node.path] = ds
    return xr.DataTree.from_dict(out)


def write_datatree(tree: xr.DataTree, path: str | Path) -> Path:
    clean = _clean_for_netcdf(tree)
    # The input table is the bulk of a large results file and compresses well.
    encoding = {}
    if DATA_GROUP in clean.children:
        encoding[f"/{DATA_GROUP}"] = {v: {"zlib": True, "complevel": 4}
                                      for v in clean[DATA_GROUP].data_vars}
    return atomic_write(path, lambda tmp: clean.to_netcdf(tmp, engine=ENGINE, encoding=encoding))


def read_datatree(path: str | Path) -> xr.DataTree:
    with xr.open_datatree(path, engine=ENGINE) as tree:
        return tree.load()


def model_from_datatree(tree: xr.DataTree):
    from .variance_partition import VariancePartitionModel

    attrs = tree.attrs
    if attrs.get("misalign_model") != "VariancePartitionModel":
        raise ValueError("this file holds no misalign VariancePartitionModel")
    ds = tree[DATA_GROUP].to_dataset()
    data = MisalignmentData.from_frame(
        dataset_to_frame(ds), error_scale=ds.attrs["error_scale"],
        task_scale=json.loads(ds.attrs["task_scale"]), n_experts=int(ds.attrs["n_experts"]),
        n_expert_ratings=int(ds.attrs["n_expert_ratings"]))
    if data.data_hash() != attrs["data_hash"]:
        raise ValueError("the stored data do not match the stored data hash: the file is damaged")
    model = VariancePartitionModel(data, likelihood=attrs["likelihood"],
                                   priors=priors_from_json(attrs["priors"]))
    model.fit_config = json.loads(attrs.get("fit_config", "{}"))
    model.build_model()
    if "posterior" in tree.children:
        model.idata = xr.DataTree.from_dict(
            {g: tree[g].to_dataset() for g in ("posterior", "sample_stats") if g in tree.children})
    return model
