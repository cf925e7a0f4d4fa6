"""The level-by-level integration of nested Gaussian effects (LIKELIHOOD.md), written once.

Every Gaussian model of the package (E1, the G-study, their stacked and grouped forms, the
Student-t cell prior, and the pointwise likelihood that power-scaling needs) reduces its data to
one pseudo-observation per lowest node and then calls ``nested_logp``. The same code runs on
``numpy`` or ``pytensor.tensor`` (the ``xp`` argument), on a single parameter point (the sampler's
graph) or on a batch of posterior draws along leading axes (``top=``, with ``batched_ops``).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import scipy.sparse as sp

LOG_2PI = float(np.log(2 * np.pi))


def np_segment_sum(x: np.ndarray, idx: np.ndarray, n: int) -> np.ndarray:
    return np.bincount(idx, weights=x, minlength=n)


def pt_segment_sum(x, idx: np.ndarray, n: int):
    import pytensor.tensor as pt

    return pt.inc_subtensor(pt.zeros((n,), dtype=x.dtype)[idx], x)


def _take(x, idx):
    return x[idx]


def batched_ops(n_batch: int) -> tuple[Callable, Callable]:
    """(segsum, take) over the last axis of (draws, nodes) arrays.

    Segment sums are sparse matrix products (np.add.at is ~100× slower here); the matrices are
    cached per index array, since every level reuses its own.
    """
    cache: dict = {}

    def segsum(x, idx: np.ndarray, n: int) -> np.ndarray:
        key = (id(idx), n)
        if key not in cache:
            cache[key] = (sp.csr_matrix((np.ones(len(idx)), (idx, np.arange(len(idx)))),
                                        shape=(n, len(idx))), idx)  # keep idx alive for id()
        x = np.broadcast_to(x, (n_batch, len(idx)))
        return np.asarray((cache[key][0] @ x.T).T)

    def take(x, idx):
        return x[..., idx]

    return segsum, take


def nested_logp(m, s2, parents: list[tuple[str, np.ndarray]], sigma2: dict, xp,
                segsum: Callable, top: tuple[np.ndarray, int] | None = None,
                take: Callable = _take):
    """Integrate the nested levels above pseudo-observations ``m`` with variances ``s2``.

    ``parents`` lists (level, parent index of each child); ``sigma2[level]`` is that level's
    effect variance (a scalar, or one value per parent node). Returns Σ log R over every parent
    plus Σ log N(m_top; 0, s_top²).

    ``top=(node_top, n_top)``, where ``node_top`` maps each input node to its top-level
    ancestor, returns instead one value per top node along the last axis. Given the
    parameters the top nodes are independent, so these values are an exact factorisation of
    the same likelihood (they sum to the total).
    """
    if top is None:
        node_top, n_top = None, 0

        def acc(x, _nodes):
            return xp.sum(x)
    else:
        node_top, n_top = top

        def acc(x, nodes):
            return segsum(x, nodes, n_top)
    total = 0.0
    for level, idx in parents:
        n_par = int(idx.max()) + 1
        k = np.bincount(idx, minlength=n_par).astype(np.float64)
        if node_top is None:
            par_top, const = None, -0.5 * float(np.sum(k - 1)) * LOG_2PI
        else:
            par_top = np.zeros(n_par, dtype=np.int64)
            par_top[idx] = node_top
            const = acc(-0.5 * (k - 1) * LOG_2PI, par_top)
        lam = 1.0 / s2
        Lam = segsum(lam, idx, n_par)
        mbar = segsum(lam * m, idx, n_par) / Lam
        dev = m - take(mbar, idx)
        total = total + (const + 0.5 * acc(xp.log(lam), node_top)
                         - 0.5 * acc(xp.log(Lam), par_top) - 0.5 * acc(lam * dev**2, node_top))
        m, s2 = mbar, sigma2[level] + 1.0 / Lam
        node_top = par_top
    if top is None:
        top_terms = -0.5 * xp.sum(LOG_2PI + xp.log(s2) + m**2 / s2)
    else:
        top_terms = acc(-0.5 * (LOG_2PI + xp.log(s2) + m**2 / s2), node_top)
    return total + top_terms
