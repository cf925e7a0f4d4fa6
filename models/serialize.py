"""Results files: one NetCDF form for every analysis.

A file is an ArviZ-readable DataTree: ``posterior`` and ``sample_stats``, the analysis's derived
groups (shares, variances, …), the input data as its own group (integer codes with their labels),
and root attributes with the analysis kind (``KIND_ATTR``: what the registry dispatches on), the
model options and config, the priors (JSON), a hash of the data, the fit settings, the seed and
the package versions. Everything needed to rebuild the model travels in the file.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

import xarray as xr

from misalign.data.atomic import atomic_write

ENGINE = "netcdf4"
KIND_ATTR = "misalign_model"
_VERSIONED = ("misalign", "pymc", "pytensor", "arviz", "arviz-base", "arviz-stats", "nutpie",
              "pymc-extras", "numpy", "xarray", "pandas")


class ResultsFileError(ValueError):
    """A file that is not a readable misalign results file, or whose content was altered."""


def package_versions() -> dict[str, str]:
    out = {}
    for name in _VERSIONED:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out


def provenance() -> dict[str, str]:
    return {"package_versions": json.dumps(package_versions()),
            "created_at": datetime.now(UTC).isoformat(timespec="seconds")}


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


def write_datatree(tree: xr.DataTree, path: str | Path, compress: tuple[str, ...] = ()) -> Path:
    """Write atomically; the groups named in ``compress`` (the input data: the bulk of a large
    file, and it compresses well) are zlib-compressed."""
    clean = _clean_for_netcdf(tree)
    encoding = {f"/{g}": {v: {"zlib": True, "complevel": 4} for v in clean[g].data_vars}
                for g in compress if g in clean.children}
    return atomic_write(path, lambda tmp: clean.to_netcdf(tmp, engine=ENGINE, encoding=encoding))


def read_datatree(path: str | Path) -> xr.DataTree:
    """The whole file in memory, or a ``ResultsFileError`` that says plainly what is wrong."""
    path = Path(path)
    if not path.is_file():
        raise ResultsFileError(f"{path}: file not found")
    try:
        with xr.open_datatree(path, engine=ENGINE) as tree:
            tree = tree.load()
    except (OSError, ValueError, KeyError) as exc:
        raise ResultsFileError(f"{path}: not a misalign results file (not readable as NetCDF: "
                               f"{exc})") from None
    if KIND_ATTR not in tree.attrs:
        raise ResultsFileError(f"{path}: not a misalign results file (no '{KIND_ATTR}' "
                               "attribute: was it written by misalign?)")
    return tree


def file_kind(tree: xr.DataTree) -> str:
    return str(tree.attrs[KIND_ATTR])


def check_kind(tree: xr.DataTree, kind: str, source: str) -> None:
    """Refuse a file of another analysis (``misalign.load`` reads any kind)."""
    found = file_kind(tree)
    if found != kind:
        raise ResultsFileError(f"{source}: holds a '{found}' analysis, not '{kind}' (misalign.load "
                               "reads any kind of results file)")
