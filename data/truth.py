"""True variance shares of a simulated study, on the error scale after rounding.

Rounding, clipping and the experts' own noise move variance between components, so the
generating σ's are not what a correct fit recovers. The truth is instead the balanced-design
ANOVA of a large population drawn from the same generating process with the same fixed llm,
prompt and task effects. For balanced data the Gaussian (RE)ML variance estimates equal the ANOVA
estimates, so these are the values the E1 model converges to, with the model's own conventions:
the llm×prompt×task interaction the model lacks is pooled into the residual, and nested
components keep their σ² (thousands of levels).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .components import finite_population_shares


@dataclass
class AnovaAccumulator:
    """Running sums over chunks of whole teachers of an error array shaped (unit, task, design)."""

    units_per_transcript: int
    transcripts_per_teacher: int
    n_units: int = 0
    n_teachers: int = 0
    sum_e: np.ndarray | None = None
    ss_within: float = 0.0
    ss_cell: float = 0.0
    ss_unit: float = 0.0
    ss_transcript: float = 0.0
    teacher_sum: float = 0.0
    teacher_sumsq: float = 0.0
    _shape: tuple = field(default=())

    def add(self, e: np.ndarray) -> None:
        u, k, d = e.shape
        self.sum_e = e.sum(axis=0) if self.sum_e is None else self.sum_e + e.sum(axis=0)
        cell = e.mean(axis=2)
        self.ss_within += float(((e - cell[:, :, None]) ** 2).sum())
        unit = cell.mean(axis=1)
        self.ss_cell += float(((cell - unit[:, None]) ** 2).sum())
        nu, ng = self.units_per_transcript, self.transcripts_per_teacher
        tr = unit.reshape(-1, nu).mean(axis=1)
        self.ss_unit += float(((unit.reshape(-1, nu) - tr[:, None]) ** 2).sum())
        te = tr.reshape(-1, ng).mean(axis=1)
        self.ss_transcript += float(((tr.reshape(-1, ng) - te[:, None]) ** 2).sum())
        self.teacher_sum += float(te.sum())
        self.teacher_sumsq += float((te**2).sum())
        self.n_units += u
        self.n_teachers += te.shape[0]

    def variances(self, n_llm: int, n_prompt: int, n_rep: int,
                  llm_family: np.ndarray | None) -> dict[str, float]:
        """Finite-population variances of the crossed effects and σ² of the nested ones."""
        U, T = self.n_units, self.n_teachers
        nu, ng = self.units_per_transcript, self.transcripts_per_teacher
        G = U // nu
        m = self.sum_e / U  # (task, design)
        K, D = m.shape
        mbar_k = m.mean(axis=1)
        ss_w = self.ss_within - U * float(((m - mbar_k[:, None]) ** 2).sum())
        m4 = m.reshape(K, n_llm, n_prompt, n_rep)
        m3 = m4.mean(axis=3)
        rep_dev = U * float(((m4 - m3[..., None]) ** 2).sum())
        v, delta3 = crossed_decomposition(m3, llm_family)
        sigma_e2 = (ss_w + rep_dev + U * n_rep * float((delta3**2).sum())) / (U * K * (D - 1))
        ms_cell = (self.ss_cell - U * float(((mbar_k - mbar_k.mean()) ** 2).sum())) / (U * (K - 1))
        ms_unit = self.ss_unit / (G * (nu - 1))
        ms_tr = self.ss_transcript / (T * (ng - 1))
        ms_te = (self.teacher_sumsq - self.teacher_sum**2 / T) / (T - 1)
        v["unit:task"] = ms_cell - sigma_e2 / D
        v["unit"] = ms_unit - ms_cell / K
        v["transcript"] = ms_tr - ms_unit / nu
        v["teacher"] = ms_te - ms_tr / ng
        v["residual"] = sigma_e2
        return {k: max(float(x), 0.0) for k, x in v.items()}


def crossed_decomposition(m3: np.ndarray, llm_family: np.ndarray | None
                          ) -> tuple[dict[str, float], np.ndarray]:
    """Zero-sum two-way decomposition of design-cell means m3[task, llm, prompt].

    Returns the finite-population variances (Σ effect² / degrees of freedom) and the three-way
    remainder, which the E1 model has no term for.
    """
    K, L, P = m3.shape
    mu = m3.mean()
    task = m3.mean(axis=(1, 2)) - mu
    llm = m3.mean(axis=(0, 2)) - mu
    prompt = m3.mean(axis=(0, 1)) - mu
    lp = m3.mean(axis=0) - mu - llm[:, None] - prompt[None, :]
    lk = m3.mean(axis=2) - mu - task[:, None] - llm[None, :]
    pk = m3.mean(axis=1) - mu - task[:, None] - prompt[None, :]
    fitted = (mu + task[:, None, None] + llm[None, :, None] + prompt[None, None, :]
              + lp[None] + lk[:, :, None] + pk[:, None, :])
    v = {"task": float((task**2).sum() / (K - 1)),
         "prompt": float((prompt**2).sum() / (P - 1)),
         "llm:prompt": float((lp**2).sum() / ((L - 1) * (P - 1))),
         "llm:task": float((lk**2).sum() / ((L - 1) * (K - 1))),
         "prompt:task": float((pk**2).sum() / ((P - 1) * (K - 1)))}
    if llm_family is not None:
        F = int(llm_family.max()) + 1
        fam = np.array([llm[llm_family == f].mean() for f in range(F)])
        within = llm - fam[llm_family]
        v["family"] = float((fam**2).sum() / (F - 1))
        v["llm"] = float((within**2).sum() / (L - F))
    else:
        v["llm"] = float((llm**2).sum() / (L - 1))
    return v, m3 - fitted


def true_shares(variances: dict[str, float]) -> dict[str, dict[str, float]]:
    shares, aggregates = finite_population_shares(variances)
    return {"shares": shares, "aggregates": aggregates}
