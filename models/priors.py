"""Prior specifications shared by every model: overrides by name, validated, from Python or a
TOML file, and their JSON round trip. (Each model's defaults live with the model:
``e1_priors.py`` for E1.)

Every prior is a ``pymc_extras.prior.Prior``; overrides come from Python (a dict of Priors or of
``{"distribution": ..., **params}`` dicts) or from a TOML file, and are validated against the names
the model actually uses.
"""

from __future__ import annotations

import difflib
import json
import tomllib
from pathlib import Path
from typing import Any

from pymc_extras.prior import Prior


class PriorError(ValueError):
    """A prior override that the model cannot use."""


def _as_prior(name: str, spec: Any) -> Prior:
    if isinstance(spec, Prior):
        return spec
    if isinstance(spec, dict):
        spec = dict(spec)
        dist = spec.pop("distribution", None) or spec.pop("dist", None)
        if dist is None:
            raise PriorError(f"prior '{name}': give its distribution, e.g. "
                             "distribution = \"HalfNormal\"")
        params = spec.pop("kwargs", {}) | spec
        try:
            return Prior(str(dist), **params)
        except Exception as err:  # pymc_extras raises several types; say which prior it was
            raise PriorError(f"prior '{name}': {err}") from None
    raise PriorError(f"prior '{name}': expected a Prior or a table of parameters, got {spec!r}")


def resolve_priors(defaults: dict[str, Prior], overrides: dict[str, Any] | None
                   ) -> dict[str, Prior]:
    """Defaults updated by overrides; an unknown name fails with the closest known one."""
    out = dict(defaults)
    for name, spec in (overrides or {}).items():
        if name not in defaults:
            close = difflib.get_close_matches(name, list(defaults), n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise PriorError(f"unknown prior '{name}'{hint} (this model's priors: "
                             f"{', '.join(sorted(defaults))})")
        out[name] = _as_prior(name, spec)
    return out


def read_priors_toml(path: str | Path) -> dict[str, Any]:
    """Read ``[sigma_llm] distribution = "HalfNormal" sigma = 0.3`` (optionally under [priors])."""
    with open(path, "rb") as fh:
        try:
            doc = tomllib.load(fh)
        except tomllib.TOMLDecodeError as err:
            raise PriorError(f"{path}: not valid TOML: {err}") from None
    doc = doc.get("priors", doc)
    for name, spec in doc.items():
        if not isinstance(spec, dict):
            raise PriorError(f"{path}: [{name}] must be a table with a distribution and its "
                             "parameters")
    return doc


def priors_to_json(priors: dict[str, Prior]) -> str:
    return json.dumps({k: v.to_dict() for k, v in priors.items()}, sort_keys=True)


def priors_from_json(text: str) -> dict[str, Prior]:
    return {k: _as_prior(k, v) for k, v in json.loads(text).items()}
