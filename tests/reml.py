"""An independent frequentist G-study for the tests: REML by the sparse mixed-model equations.

Nothing here shares code with misalign's likelihood: V = σ²_e I + Σ_k σ²_k Z_k Z_kᵀ is handled
through Henderson's mixed-model equations (sparse LU for the log-determinant and the solve), and
−2 log L_REML = n log σ²_e + Σ_k q_k log σ²_k + log|C*| − (p + q) log σ²_e + yᵀPy, with
C* = [[XᵀX, XᵀZ], [ZᵀX, ZᵀZ + σ²_e G⁻¹]] and yᵀPy = (yᵀy − ŝᵀ[Xᵀy; Zᵀy]) / σ²_e.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.optimize as so
import scipy.sparse as sp
import scipy.sparse.linalg as sla


def _indicator(labels: pd.Series) -> sp.csr_matrix:
    codes, uniq = pd.factorize(labels)
    return sp.csr_matrix((np.ones(len(codes)), (np.arange(len(codes)), codes)),
                         shape=(len(codes), len(uniq)))


def reml_components(frame: pd.DataFrame, factors: tuple[str, ...] = ("teacher", "lesson",
                                                                     "rater")) -> dict:
    """REML variance components of ``score`` with random intercepts for ``factors``."""
    y = frame["score"].to_numpy(float)
    y = (y - y.mean()) / y.std()
    n = len(y)
    zs = [_indicator(frame[f]) for f in factors]
    z = sp.hstack(zs).tocsc()
    x = sp.csc_matrix(np.ones((n, 1)))
    w = sp.hstack([x, z]).tocsc()
    wtw = (w.T @ w).tocsc()
    wty = w.T @ y
    yty = float(y @ y)
    sizes = [m.shape[1] for m in zs]
    p, q = 1, sum(sizes)

    def objective(theta: np.ndarray) -> float:
        s2 = np.exp(theta)
        s2_e, s2_k = s2[-1], s2[:-1]
        ginv = np.concatenate([np.full(k, s2_e / v) for k, v in zip(sizes, s2_k, strict=True)])
        c = (wtw + sp.diags(np.r_[0.0, ginv])).tocsc()
        try:
            lu = sla.splu(c)
        except RuntimeError:
            return 1e20
        logdet = float(np.sum(np.log(np.abs(lu.U.diagonal()))))
        sol = lu.solve(wty)
        ypy = (yty - float(sol @ wty)) / s2_e
        return (n * np.log(s2_e) + sum(k * np.log(v) for k, v in zip(sizes, s2_k, strict=True))
                + logdet - (p + q) * np.log(s2_e) + ypy)

    start = np.log(np.full(len(factors) + 1, 0.2))
    res = so.minimize(objective, start, method="Nelder-Mead",
                      options={"xatol": 1e-6, "fatol": 1e-8, "maxiter": 4000, "maxfev": 4000})
    s2 = np.exp(res.x)
    names = [*factors, "residual"]
    total = s2.sum()
    return {"variance": dict(zip(names, s2, strict=True)),
            "share": {k: v / total for k, v in zip(names, s2, strict=True)},
            "converged": bool(res.success)}
