"""E1's likelihood terms in the PyMC graph (the specification the compiled kernels are tested
against), and what Student-t keeps of its cell latents after sampling."""

from __future__ import annotations

from typing import Any

import numpy as np
import pymc as pm
import pytensor.tensor as pt
import xarray as xr

from .base import SAMPLE_DIMS
from .fast_e1 import RESIDUAL_MEAN_SQUARE
from .likelihood import cell_prior_logp, gaussian_marginal_logp
from .predictive import student_residual_mean_square
from .recursion import pt_segment_sum
from .spec import full_design_means


def gaussian_potential(vpm: Any, base, rest, sig: dict, s2e, offset) -> None:
    """Every nested effect integrated out (likelihood.py), as one potential."""
    spec, chain = vpm.spec, vpm.spec.chain
    stats = vpm.sufficient_stats()
    pm.Potential("marginal_loglik", gaussian_marginal_logp(
        stats, full_design_means(base, rest, spec, pt), sig[chain.leaf_component] ** 2,
        s2e, {name: sig[name] ** 2 for name, _ in chain.parents}, xp=pt,
        segsum=pt_segment_sum, offset=offset,
        sigma2_subs=[sig[c] ** 2 for c in chain.sub_components]))


def student_likelihood(vpm: Any, model: pm.Model, base, rest, sig: dict, s2e, offset) -> None:
    """t ratings around rest + one latent per unit×task cell, the latents' nested prior."""
    spec, data = vpm.spec, vpm.data
    model.add_coord("cell", np.arange(int(data.cell.max()) + 1))
    # Hierarchical centring: each cell latent carries everything constant inside the cell
    # (intercept, task effect, reference offset), so the location parameters do not fight
    # the 1000s of latents along a direction a diagonal mass matrix cannot adapt to.
    b = pm.Flat("cell_mean", dims="cell")
    centre = base[data.cell_task]
    if offset is not None:
        centre = centre + pt.dot(spec.reference_weights, offset)
    pm.Potential("cell_prior", cell_prior_logp(
        b - centre, sig["unit:task"] ** 2, spec.levels,
        {name: sig[name] ** 2 for name, _ in spec.levels}, pt, pt_segment_sum))
    nu = 2.0 + vpm.priors["nu_minus_2"].create_variable("nu_minus_2")
    scale = pt.sqrt(s2e)[data.task] if len(spec.coords["task"]) > 1 else sig["residual"]
    pm.StudentT("error", nu=nu, mu=rest[spec.design] + b[data.cell], sigma=scale,
                observed=data.error)


def residual_in_place_of_latents(vpm: Any, idata: xr.DataTree, keep: bool) -> xr.DataTree:
    """Add each draw's realised mean squared residual (``residual_mean_square``) and, unless
    ``keep``, drop the cell latents (≈ 1.5 GB at reference size)."""
    if "cell_mean" not in idata["posterior"]:
        return idata
    post = idata["posterior"].to_dataset()
    ms = student_residual_mean_square(vpm, post)
    post[RESIDUAL_MEAN_SQUARE] = xr.DataArray(
        ms.reshape(post.sizes["chain"], post.sizes["draw"]), dims=SAMPLE_DIMS)
    if not keep:
        post = post.drop_vars("cell_mean")
        if "cell" in post.coords:
            post = post.drop_vars("cell")
    groups = {name: idata[name].to_dataset() for name in idata.children}
    groups["posterior"] = post
    return xr.DataTree.from_dict(groups)
