"""What an E1 model contains for a given data set: factors, components, nesting (no PyMC here)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from misalign.data import MisalignmentData
from misalign.data.components import COMPONENTS

FEW_LEVELS = 5


@dataclass
class LeafChain:
    """How the ratings of a unit×task cell are nested below it, for the recursion.

    ``cell``: each rating's lowest node (the cells, or finer nodes); ``parents``: the levels
    above it (cells' levels included); ``sub``: each rating's equal-size sub-cell when one
    sub-level integrates at pattern cost (``SufficientStats(sub=…)``); ``leaf_component``: the
    variance of the lowest nodes; ``sub_component``: that of the sub-cells.
    """

    cell: np.ndarray
    parents: list[tuple[str, np.ndarray]]
    leaf_component: str
    sub: np.ndarray | None = None
    sub_component: str | None = None
    leaves: np.ndarray | None = None  # the finest nodes (sub-cells, or ``cell``)
    leaf_parents: list[tuple[str, np.ndarray]] | None = None  # levels above ``leaves``

    @property
    def finest_component(self) -> str:
        """The variance component of the finest nodes."""
        return self.sub_component or self.leaf_component


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
    design_task: np.ndarray | None = None  # task of each design cell (the residual groups)
    chain: LeafChain | None = None  # the ratings below the cells (Gaussian likelihood)
    reference_weights: np.ndarray | None = None  # (cells × experts), with a reference term

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


def _nodes(*keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Node index of each rating for the combination of ``keys`` (first key: the cell), and
    the cell of each node."""
    code = np.zeros(len(keys[0]), dtype=np.int64)
    for k in keys:
        code = code * (int(k.max()) + 1) + k
    uniq, node = np.unique(code, return_inverse=True)
    node = node.ravel()
    cell = np.zeros(len(uniq), dtype=np.int64)
    cell[node] = keys[0]
    return node, cell


def _equal_sizes(node: np.ndarray, node_cell: np.ndarray, cell: np.ndarray) -> bool:
    k = np.bincount(node_cell, minlength=int(cell.max()) + 1)
    n_cell = np.bincount(cell, minlength=len(k))
    return bool(np.all(np.bincount(node) * k[node_cell] == n_cell[node_cell]))


def _chain(data: MisalignmentData, fam: np.ndarray | None, lineage: bool, llm_unit: bool,
           levels: list[tuple[str, np.ndarray]]) -> LeafChain:
    cell = data.cell.astype(np.int64)
    if not lineage and not llm_unit:
        return LeafChain(cell, levels, "unit:task", leaves=cell, leaf_parents=levels)
    if lineage:
        fam_node, fam_cell = _nodes(cell, fam[data.llm])
    if llm_unit:
        llm_node, llm_cell = _nodes(cell, data.llm.astype(np.int64))
    if lineage and llm_unit:
        llm_fam = np.zeros(int(llm_node.max()) + 1, dtype=np.int64)
        llm_fam[llm_node] = fam_node
        parents = [("lineage", llm_fam), ("unit:task", fam_cell), *levels]
        return LeafChain(llm_node, parents, "llm:unit:task", leaves=llm_node,
                         leaf_parents=parents)
    node, node_cell, name = (fam_node, fam_cell, "lineage") if lineage else (
        llm_node, llm_cell, "llm:unit:task")
    full = [("unit:task", node_cell), *levels]
    if _equal_sizes(node, node_cell, cell):
        return LeafChain(cell, levels, "unit:task", sub=node, sub_component=name, leaves=node,
                         leaf_parents=full)
    return LeafChain(node, full, name, leaves=node, leaf_parents=full)


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
    gaussian = likelihood == "gaussian"
    cell = data.cell.astype(np.int64)
    # Lineage: LLMs of one family together on a cell (within-family pairs), and cells rated by
    # several families (to tell it from the error all LLMs share).
    lineage = False
    if fam is not None:
        fam_node, fam_cell = _nodes(cell, fam[data.llm])
        llm_node, _ = _nodes(cell, data.llm.astype(np.int64))
        llm_per_fam = np.bincount(_nodes(fam_node, llm_node)[1])
        lineage = bool((llm_per_fam > 1).any() and len(fam_cell) > len(np.unique(fam_cell)))
    rep_node, _ = _nodes(cell, data.llm.astype(np.int64), data.prompt.astype(np.int64))
    replicates = bool(np.bincount(rep_node).max() > 1)
    weights = data.reference_weights
    reference = weights is not None and weights.shape[1] > 1
    present = {"llm": L > 1, "prompt": P > 1, "task": K > 1, "family": fam is not None,
               "llm:prompt": L > 1 and P > 1, "llm:task": L > 1 and K > 1,
               "prompt:task": P > 1 and K > 1, "llm:prompt:task": L > 1 and P > 1 and K > 1,
               "unit:task": True, "residual": True, "reference": reference,
               "lineage": lineage and gaussian, "llm:unit:task": replicates and gaussian}
    if not gaussian and (lineage or replicates):
        notes.append("the Student-t model has no lineage or llm×unit×task term: those errors "
                     "count as residual there; use --likelihood gaussian to separate them")
    levels = _identified_levels(data.parents)
    for name, _ in levels:
        present[name] = True
    components = [c for c in COMPONENTS if present.get(c, False)]
    for dim in ("llm", "prompt"):
        if sizes[dim] == 1:
            notes.append(f"only one {dim.replace('llm', 'LLM')} in the data: the {dim} effect "
                         "and its interactions are not estimable (no share is reported)")
    if "llm" not in components and "prompt" not in components:
        notes.append("with one LLM and one prompt nothing is attributable to choosing them: "
                     "the attributable aggregate is not estimable and is left out")
    for dim in ("llm", "prompt", "task"):
        if 1 < sizes[dim] < FEW_LEVELS:
            notes.append(f"{dim} has {sizes[dim]} levels (< {FEW_LEVELS}): its superpopulation "
                         "share is mostly prior; read the finite-population share")
    if fam is not None and 1 < len(lab["family"]) < FEW_LEVELS:
        notes.append(f"family has {len(lab['family'])} levels (< {FEW_LEVELS}): its "
                     "superpopulation share is mostly prior")
    if reference:
        coords["expert"] = lab["expert"]
    design = ((data.task.astype(np.int64) * L + data.llm) * P + data.prompt)
    chain = _chain(data, fam, present["lineage"], present["llm:unit:task"], levels)
    return ModelSpec(likelihood=likelihood, coords=coords, components=components, levels=levels,
                     llm_family=fam, design=design, n_design=K * L * P, warnings=notes,
                     design_task=np.arange(K * L * P) // (L * P), chain=chain,
                     reference_weights=weights if reference else None)


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
    ``prompt_task_effect``, ``llm_prompt_task_effect``) to pytensor tensors or to numpy arrays
    with leading batch axes (draws); absent effects count as zero. Returns ``base`` (…, task):
    intercept + task effect, constant inside a unit×task cell, and ``rest`` (…, task·llm·prompt):
    every other effect.
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
    if get("llm_prompt_task_effect") is not None:  # (…, llm, prompt, task)
        rest = rest + xp.moveaxis(get("llm_prompt_task_effect"), -1, -3)
    rest = rest.reshape((K * L * P,)) if rest.ndim == 3 else rest.reshape(
        (*rest.shape[:-3], K * L * P))
    return base, rest


def full_design_means(base, rest, spec: ModelSpec, xp=np):
    """base + rest as one value per design cell (…, task·llm·prompt)."""
    n = len(spec.coords["llm"]) * len(spec.coords["prompt"])
    return xp.repeat(base, n, axis=-1) + rest
