"""Text columns as pandas Categoricals: integer codes plus one copy of each distinct label.

An 11 M-row ratings table has a few thousand distinct ids per column; holding every cell as a
Python or Arrow string costs gigabytes and makes every comparison a string comparison. Cleaning
(strip, missing → "") is done once per distinct label, not once per row.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def clean_text(s: pd.Series) -> pd.Series:
    """The column as a Categorical of stripped strings, missing values as "" (O(rows))."""
    cat = s.array if isinstance(s.dtype, pd.CategoricalDtype) else pd.Categorical(s)
    raw = np.asarray(cat.categories, dtype=object)
    labels = pd.Index(raw).astype("string").fillna("").astype(str).str.strip()
    labels = np.asarray(labels, dtype=object)
    codes = np.asarray(cat.codes, dtype=np.int64)
    has_missing = bool((codes < 0).any())
    used = np.bincount(codes[codes >= 0], minlength=len(labels)) > 0 if len(labels) else \
        np.zeros(0, bool)
    clean = (isinstance(s.dtype, pd.CategoricalDtype) and not has_missing and used.all()
             and s.dtype.categories.dtype == object and bool((labels == raw).all()))
    if clean:
        return s
    # Distinct labels may collapse after stripping; missing joins "" (index len(labels)).
    uniq, inv = np.unique(np.append(labels[used], ""), return_inverse=True)
    remap = np.full(len(labels) + 1, -1, dtype=np.int64)
    remap[np.flatnonzero(used)] = inv[:-1]
    remap[-1] = inv[-1]
    new = remap[np.where(codes < 0, len(labels), codes)]
    keep = np.bincount(new, minlength=len(uniq)) > 0  # drop "" unless it occurs
    shift = np.cumsum(keep) - 1
    out = pd.Categorical.from_codes(shift[new].astype(_code_dtype(int(keep.sum()))),
                                    categories=pd.Index(uniq[keep].astype(str), dtype=object))
    return pd.Series(out, index=s.index, name=s.name)


def replace_label(s: pd.Series, old: str, new: str) -> pd.Series:
    """Replace one label everywhere (e.g. an empty replicate by "1")."""
    cats = list(s.cat.categories)
    if old not in cats:
        return s
    if new in cats:
        out = s.astype(object).where(s != old, new)
        return clean_text(out)
    return s.cat.rename_categories({old: new})


def sorted_codes(s: pd.Series) -> tuple[np.ndarray, list[str]]:
    """Codes into the sorted labels that occur (a canonical form: same data, same codes)."""
    cat = s.array if isinstance(s.dtype, pd.CategoricalDtype) else pd.Categorical(s)
    codes = np.asarray(cat.codes, dtype=np.int64)
    labels = np.asarray(cat.categories.astype(str), dtype=object)
    used = np.flatnonzero(np.bincount(codes[codes >= 0], minlength=len(labels)) > 0)
    order = used[np.argsort(labels[used], kind="stable")]
    rank = np.full(len(labels), -1, dtype=np.int64)
    rank[order] = np.arange(len(order))
    return rank[codes].astype(np.int32), [str(x) for x in labels[order]]


def _code_dtype(n: int) -> type:
    return np.int8 if n < 127 else np.int16 if n < 32767 else np.int32


def frame_to_dataset(frame: pd.DataFrame, text: list[str], numbers: list[str]):
    """A table as an xarray Dataset along ``rating``: text columns as canonical codes with a
    ``{col}_labels`` coordinate, numbers as float64 (the form results files store)."""
    import xarray as xr

    ds = xr.Dataset()
    for col in text:
        codes, labels = sorted_codes(frame[col])
        ds[col] = xr.DataArray(codes, dims=("rating",))
        ds.coords[f"{col}_labels"] = xr.DataArray(np.asarray(labels, dtype=object),
                                                  dims=(f"{col}_labels",))
    for col in numbers:
        ds[col] = xr.DataArray(frame[col].to_numpy(dtype=np.float64), dims=("rating",))
    return ds


def dataset_to_frame(ds, text: list[str], numbers: list[str], categorical: bool = True
                     ) -> pd.DataFrame:
    """The inverse of ``frame_to_dataset`` (text as Categoricals, or as plain strings)."""
    out = {}
    n = ds.sizes.get("rating", 0)
    for col in text:
        labels = np.asarray(ds[f"{col}_labels"].values, dtype=object).astype(str)
        # NetCDF gives an empty string back as "nan".
        labels = np.where(labels == "nan", "", labels) if len(labels) else labels
        if not len(labels):
            labels, codes = np.array([""], dtype=object), np.zeros(n, np.int32)
        else:
            codes = ds[col].values
        out[col] = (pd.Categorical.from_codes(codes, categories=pd.Index(labels, dtype=object))
                    if categorical else np.asarray(labels, dtype=object)[codes])
    for col in numbers:
        out[col] = ds[col].values
    return pd.DataFrame(out)[[*text, *numbers]]


def frame_hash(frame: pd.DataFrame, columns: list[str]) -> str:
    """SHA-256 of a table's content: labels and their canonical codes, float bytes. Equal for
    equal content whatever the column dtypes (Categorical or plain text)."""
    import hashlib

    h = hashlib.sha256()
    for col in columns:
        h.update(col.encode())
        v = frame[col]
        if pd.api.types.is_float_dtype(v.dtype):
            h.update(np.ascontiguousarray(v.to_numpy(dtype=np.float64)).tobytes())
        else:
            codes, labels = sorted_codes(v)
            h.update("\x1e".join(labels).encode())
            h.update(np.ascontiguousarray(codes).tobytes())
    return h.hexdigest()
