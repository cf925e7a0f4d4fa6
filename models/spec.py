"""What an E1 model contains for a given data set: factors, components, nesting (no PyMC here)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from misalign.data import MisalignmentData
from misalign.data.components import COMPONENTS

EFFECTS = {  # component -> (posterior variable, dims)
    "llm": ("llm_effect", ("llm",)), "family": ("family_effect", ("family",)),
    "prompt": ("prompt_effect", ("prompt",)), "task": ("task_effect", ("task",)),
    "llm:prompt": ("llm_prompt_effect", ("llm", "prompt")),
    "llm:task": ("llm_task_effect", ("llm", "task")),
    "prompt:task": ("prompt_task_effect", ("prompt", "task")),
    "llm:prompt:task": ("llm_prompt_task_effect", ("llm", "prompt", "task")),
}

FEW_LEVELS = 5


@dataclass
class LeafChain:
    """How the ratings of a unit×task cell are nested below it, for the recursion.

    ``cell``: each rating's lowest node for the recursion (the cells, or finer nodes);
    ``parents``: the levels above it (the cells' own levels included); ``leaf_component``: the
    variance of the ``cell`` nodes; ``subs``: each rating's node at each sub-level (finest
    first) when the sub-levels integrate at pattern cost (``SufficientStats(subs=…)``), with
    ``sub_components``; ``leaves`` / ``leaf_parents``: the finest nodes and every level above
    them (the general form: pointwise likelihood, replications).
    """

    cell: np.ndarray
    parents: list[tuple[str, np.ndarray]]
    leaf_component: str
    leaves: np.ndarray
    leaf_parents: list[tuple[str, np.ndarray]]
    subs: list[np.ndarray] = field(default_factory=list)
    sub_components: list[str] = field(default_factory=list)

    @property
    def finest_component(self) -> str:
        """The variance component of the finest nodes."""
        return self.sub_components[0] if self.subs else self.leaf_component


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


def _equal_sizes(node: np.ndarray, node_parent: np.ndarray, parent: np.ndarray) -> bool:
    """Do siblings (nodes of one parent) hold equally many ratings?"""
    k = np.bincount(node_parent, minlength=int(parent.max()) + 1)
    n_parent = np.bincount(parent, minlength=len(k))
    return bool(np.all(np.bincount(node) * k[node_parent] == n_parent[node_parent]))


def _chain(data: MisalignmentData, fam: np.ndarray | None, lineage: bool, llm_unit: bool,
           levels: list[tuple[str, np.ndarray]]) -> LeafChain:
    cell = data.cell.astype(np.int64)
    if not lineage and not llm_unit:
        return LeafChain(cell, levels, "unit:task", cell, levels)
    nodes, names, ups = [], [], []  # finest first; ups: each node's parent node
    if llm_unit:
        node, _ = _nodes(cell, data.llm.astype(np.int64))
        nodes.append(node)
        names.append("llm:unit:task")
    if lineage:
        node, _ = _nodes(cell, fam[data.llm])
        nodes.append(node)
        names.append("lineage")
    for child, parent in zip(nodes, [*nodes[1:], cell], strict=True):
        up = np.zeros(int(child.max()) + 1, dtype=np.int64)
        up[child] = parent
        ups.append(up)
    full = [(n, up) for n, up in zip([*names[1:], "unit:task"], ups, strict=True)] + levels
    equal = all(_equal_sizes(c, up, p) for c, up, p in
                zip(nodes, ups, [*nodes[1:], cell], strict=True))
    if equal:
        return LeafChain(cell, levels, "unit:task", nodes[0], full, subs=nodes,
                         sub_components=names)
    return LeafChain(nodes[0], full, names[0], nodes[0], full)


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
    # llm×unit×task: an LLM's own error on a cell, shared by its prompts and replicates; told
    # from the residual wherever an LLM rated a cell more than once.
    llm_cell_node, _ = _nodes(cell, data.llm.astype(np.int64))
    repeated = bool(np.bincount(llm_cell_node).max() > 1)
    # With one rating per unit × task (one LLM, one prompt, no replicates) the error every LLM
    # shares on a unit × task and the noise have the same footprint: only their sum is seen.
    one_per_cell = bool(np.bincount(cell).max() == 1)
    weights = data.reference_weights
    reference = weights is not None and weights.shape[1] > 1
    present = {"llm": L > 1, "prompt": P > 1, "task": K > 1, "family": fam is not None,
               "llm:prompt": L > 1 and P > 1, "llm:task": L > 1 and K > 1,
               "prompt:task": P > 1 and K > 1, "llm:prompt:task": L > 1 and P > 1 and K > 1,
               "unit:task": not (one_per_cell and gaussian), "residual": True,
               "reference": reference,
               "lineage": lineage and gaussian, "llm:unit:task": repeated and gaussian}
    if not gaussian and (lineage or repeated):
        notes.append("the Student-t model has no lineage or llm×unit×task term: those errors "
                     "count as residual there; use --likelihood gaussian to separate them")
    levels = _identified_levels(data.parents)
    for name, _ in levels:
        present[name] = True
    components = [c for c in COMPONENTS if present.get(c, False)]
    for dim in ("llm", "prompt"):
        if sizes[dim] == 1:
            notes.append(f"not estimable with one {dim.replace('llm', 'LLM')}: the {dim} effect "
                         "and its interactions get no row (one level in the data)")
    if "unit:task" not in components:
        notes.append("one rating per unit × task: the error every LLM shares on a unit × task "
                     "cannot be told from noise, so it is counted in the residual (no unit:task "
                     "row)")
    if "llm" not in components and "prompt" not in components:
        notes.append("with one LLM and one prompt nothing is attributable to choosing them: "
                     "the attributable aggregate is not estimable and is left out")
    for dim in ("llm", "prompt", "task"):
        if 1 < sizes[dim] < FEW_LEVELS:
            notes.append(f"{dim} has {sizes[dim]} levels (< {FEW_LEVELS}): its superpopulation "
                         "σ rests on few levels; prefer the finite-population share")
    if fam is not None and 1 < len(lab["family"]) < FEW_LEVELS:
        notes.append(f"family has {len(lab['family'])} levels (< {FEW_LEVELS}): its "
                     "superpopulation σ rests on few levels")
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


def zero_sum_basis(sizes: list[int]) -> np.ndarray:
    """Orthonormal basis (Π n × Π (n − 1)) of arrays that sum to zero along every axis: the
    Kronecker product of one Helmert basis per axis. B z with z ~ N(0, σ² I) is exactly
    ``pm.ZeroSumNormal(σ, n_zerosum_axes=len(sizes))``, with a far smaller graph to compile."""
    out = np.ones((1, 1))
    for n in sizes:
        out = np.kron(out, within_family_basis(np.zeros(n, dtype=np.int64)))
    return out


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
