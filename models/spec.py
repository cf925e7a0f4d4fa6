"""What an E1 model contains for a given data set: factors, components, nesting (no PyMC here)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from misalign.data import MisalignmentData
from misalign.data.components import COMPONENTS

FEW_LEVELS = 5


@dataclass
class ModelSpec:
    likelihood: str
    coords: dict[str, list[str]]
    components: list[str]  # present components, in COMPONENTS order
    levels: list[tuple[str, np.ndarray]]  # identified nested levels above the cell
    llm_family: np.ndarray | None
    design: np.ndarray  # (task·L + llm)·P + prompt for each rating
    n_design: int
    warnings: list[str]

    @property
    def has_family(self) -> bool:
        return self.llm_family is not None


def _identified_levels(parents: list[tuple[str, np.ndarray]]) -> list[tuple[str, np.ndarray]]:
    """Drop levels whose every node has a single child (their variance is not identified)."""
    out: list[tuple[str, np.ndarray]] = []
    carry: np.ndarray | None = None  # composed map from the current bottom to this level
    for name, idx in parents:
        mapped = idx if carry is None else idx[carry]
        n_par = int(mapped.max()) + 1
        if n_par == len(mapped):
            carry = mapped  # one child each: skip the level, compose its map into the next
            continue
        out.append((name, mapped))
        carry = None
    return out


def make_spec(data: MisalignmentData, likelihood: str = "gaussian") -> ModelSpec:
    lab = data.labels
    L, P, K = len(lab["llm"]), len(lab["prompt"]), len(lab["task"])
    notes: list[str] = []
    fam = data.llm_family
    if fam is not None and int(fam.max()) + 1 == L:
        notes.append("every LLM is alone in its family: family and llm effects are not separable, "
                     "so families are ignored")
        fam = None
    coords = {"llm": lab["llm"], "prompt": lab["prompt"], "task": lab["task"]}
    if fam is not None:
        coords["family"] = lab["family"]
    sizes = {"llm": L, "prompt": P, "task": K}
    present = {"llm": L > 1, "prompt": P > 1, "task": K > 1, "family": fam is not None,
               "llm:prompt": L > 1 and P > 1, "llm:task": L > 1 and K > 1,
               "prompt:task": P > 1 and K > 1, "unit:task": True, "residual": True}
    levels = _identified_levels(data.parents)
    for name, _ in levels:
        present[name] = True
    components = [c for c in COMPONENTS if present.get(c, False)]
    for dim in ("llm", "prompt", "task"):
        if 1 < sizes[dim] < FEW_LEVELS:
            notes.append(f"{dim} has {sizes[dim]} levels (< {FEW_LEVELS}): its superpopulation "
                         "share is mostly prior; read the finite-population share")
    if fam is not None and 1 < len(lab["family"]) < FEW_LEVELS:
        notes.append(f"family has {len(lab['family'])} levels (< {FEW_LEVELS}): its "
                     "superpopulation share is mostly prior")
    design = ((data.task.astype(np.int64) * L + data.llm) * P + data.prompt)
    return ModelSpec(likelihood=likelihood, coords=coords, components=components, levels=levels,
                     llm_family=fam, design=design, n_design=K * L * P, warnings=notes)


def within_family_basis(llm_family: np.ndarray) -> np.ndarray:
    """Orthonormal basis (L × (L − F)) of effects that sum to zero inside every family.

    With z ~ N(0, σ² I), B z has covariance σ²(I − J/n_f) in each family: a zero-sum normal per
    family, without the unidentified family-mean directions a centring step would leave.
    """
    L = len(llm_family)
    cols = []
    for f in range(int(llm_family.max()) + 1):
        members = np.flatnonzero(llm_family == f)
        n = len(members)
        for j in range(1, n):  # Helmert contrasts
            v = np.zeros(L)
            v[members[:j]] = 1.0
            v[members[j]] = -j
            cols.append(v / np.linalg.norm(v))
    return np.column_stack(cols) if cols else np.zeros((L, 0))


def within_family_labels(llm_family: np.ndarray, llms: list[str], families: list[str]
                         ) -> list[str]:
    """A label per column of ``within_family_basis``: "family: LLM vs the ones before it"."""
    out = []
    for f in range(int(llm_family.max()) + 1):
        members = np.flatnonzero(llm_family == f)
        for j in range(1, len(members)):
            before = ", ".join(llms[m] for m in members[:j])
            out.append(f"{families[f]}: {llms[members[j]]} vs {before}")
    return out


def design_means(effects: dict, spec: ModelSpec, xp=np) -> tuple:
    """The crossed part of the mean, in the design-cell layout of ``spec.design``.

    ``effects`` maps posterior variable names (``intercept``, ``llm_effect``, ``family_effect``,
    ``prompt_effect``, ``task_effect``, ``llm_prompt_effect``, ``llm_task_effect``,
    ``prompt_task_effect``) to pytensor tensors or to numpy arrays with leading batch axes
    (draws); absent effects count as zero. Returns ``base`` (…, task): intercept + task effect,
    constant inside a unit×task cell, and ``rest`` (…, task·llm·prompt): every other effect.
    One function for the sampler's graph and the numpy replications, so they cannot drift apart.
    """
    K, L, P = (len(spec.coords[d]) for d in ("task", "llm", "prompt"))
    get = effects.get
    base = effects["intercept"][..., None] + xp.zeros(K)
    if get("task_effect") is not None:
        base = base + get("task_effect")
    rest = xp.zeros((K, L, P))
    llm = get("llm_effect")
    if spec.has_family and get("family_effect") is not None:
        fam = xp.take(get("family_effect"), spec.llm_family, axis=-1)
        llm = fam if llm is None else llm + fam
    if llm is not None:
        rest = rest + llm[..., None, :, None]
    if get("prompt_effect") is not None:
        rest = rest + get("prompt_effect")[..., None, None, :]
    if get("llm_prompt_effect") is not None:
        rest = rest + get("llm_prompt_effect")[..., None, :, :]
    if get("llm_task_effect") is not None:
        rest = rest + xp.swapaxes(get("llm_task_effect"), -1, -2)[..., :, :, None]
    if get("prompt_task_effect") is not None:
        rest = rest + xp.swapaxes(get("prompt_task_effect"), -1, -2)[..., :, None, :]
    rest = rest.reshape((K * L * P,)) if rest.ndim == 3 else rest.reshape(
        (*rest.shape[:-3], K * L * P))
    return base, rest


def full_design_means(base, rest, spec: ModelSpec, xp=np):
    """base + rest as one value per design cell (…, task·llm·prompt)."""
    n = len(spec.coords["llm"]) * len(spec.coords["prompt"])
    return xp.repeat(base, n, axis=-1) + rest
