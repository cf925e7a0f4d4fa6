"""True variance shares of a simulated study, on the error scale after rounding.

Rounding, clipping and the experts' own noise move variance between components, so the
generating σ's are not what a correct fit recovers. The truth is instead the balanced-design
ANOVA of a large population drawn from the same generating process with the same fixed llm,
prompt and task effects, under the model's own definitions:

- crossed components (llm, family, prompt, task, their interactions) and the reference (the
  experts' severities, estimated by regressing unit means on each unit's expert weights): the
  variance over ratings of the realised effect a rating carries;
- nested components (unit×task, unit, transcript, teacher, lineage = family×unit×task,
  llm×unit×task): their σ², from expected mean squares; the residual: the mean over tasks of
  each task's within-(cell, LLM) variance.

The size of the drift (``AnovaAccumulator.biases``) is the population's mean error per design
cell, averaged as the model averages its zero-sum effects: overall, per task, per LLM, per
prompt, per LLM × prompt (each over the tasks and the other factor, with equal weights).

For balanced data Gaussian (RE)ML estimates equal these ANOVA estimates, so they are what the
E1 model converges to. The errors arrive as (unit, task, llm, prompt, replicate) arrays of whole
teachers; llm×unit×task is separated when an LLM rates a cell more than once (it is pooled into
the residual otherwise), lineage when a family has two or more LLMs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .components import finite_population_shares


@dataclass
class AnovaAccumulator:
    units_per_transcript: int
    transcripts_per_teacher: int
    shape: tuple[int, int, int, int]  # tasks, llms, prompts, replicates
    llm_family: np.ndarray  # family of each llm
    n_experts: int
    n_units: int = 0
    n_teachers: int = 0
    sums: dict = field(default_factory=dict)

    def _add(self, key: str, value) -> None:
        self.sums[key] = self.sums.get(key, 0.0) + value

    def add(self, e: np.ndarray, w: np.ndarray) -> None:
        """``e``: (units, tasks, llms, prompts, replicates) errors; ``w``: (units, experts)."""
        U, K, L, P, R = e.shape
        fam = self.llm_family
        F = int(fam.max()) + 1
        self._add("sum_e", e.sum(axis=0))
        # Within a cell: replicate/prompt within LLM, LLM within family, family within cell.
        e_l = e.mean(axis=(3, 4))  # (U, K, L)
        e_f = np.stack([e_l[:, :, fam == f].mean(axis=2) for f in range(F)], axis=2)
        cell = e_l.mean(axis=2)  # (U, K)
        self._add("ss_res", ((e - e_l[..., None, None]) ** 2).sum(axis=(0, 2, 3, 4)))
        self._add("ss_llm", P * R * ((e_l - e_f[:, :, fam]) ** 2).sum(axis=(0, 2)))
        n_f = np.bincount(fam, minlength=F)
        self._add("ss_fam", P * R * (n_f * (e_f - cell[:, :, None]) ** 2).sum(axis=(0, 2)))
        # Cells within unit; the reference is constant inside a unit (one rater per unit).
        unit = cell.mean(axis=1)
        self._add("ss_cell", float(((cell - unit[:, None]) ** 2).sum()))
        nu, ng = self.units_per_transcript, self.transcripts_per_teacher
        self._add("ww", w.T @ w)
        self._add("w_sum", w.sum(axis=0))
        self._add("w_e", w.T @ unit)
        # Units within transcript, transcripts within teacher, teachers: each as a quadratic
        # form in the (yet unknown) severities ρ: Σ (d − Δw·ρ)² = A − 2 ρ·b + ρᵀ C ρ.
        for name, x, ww, size in (("unit", unit, w, nu),
                                  ("transcript", *self._means(unit, w, nu), ng)):
            xm = x.reshape(-1, size).mean(axis=1)
            wm = ww.reshape(-1, size, ww.shape[1]).mean(axis=1)
            d = x - np.repeat(xm, size)
            dw = ww - np.repeat(wm, size, axis=0)
            self._add(f"A_{name}", float(d @ d))
            self._add(f"b_{name}", dw.T @ d)
            self._add(f"C_{name}", dw.T @ dw)
        te, wt = self._means(*self._means(unit, w, nu), ng)
        self._add("te_sum", float(te.sum()))
        self._add("te_sq", float(te @ te))
        self._add("te_w", wt.T @ te)
        self._add("te_wsum", wt.sum(axis=0))
        self._add("te_ww", wt.T @ wt)
        self.n_units += U
        self.n_teachers += te.shape[0]

    @staticmethod
    def _means(x: np.ndarray, w: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
        return (x.reshape(-1, size).mean(axis=1),
                w.reshape(-1, size, w.shape[1]).mean(axis=1))

    def biases(self, tasks, llms, prompts) -> dict:
        """Mean error of the population: overall, per task, LLM, prompt and LLM × prompt
        (labels as given), as the E1 bias group defines them."""
        m = (self.sums["sum_e"] / self.n_units).mean(axis=3)  # (K, L, P)
        pairs = m.mean(axis=0)
        return {"overall": float(m.mean()),
                "task": dict(zip(tasks, map(float, m.mean(axis=(1, 2))), strict=True)),
                "llm": dict(zip(llms, map(float, pairs.mean(axis=1)), strict=True)),
                "prompt": dict(zip(prompts, map(float, pairs.mean(axis=0)), strict=True)),
                "llm_prompt": {f"{a} × {b}": float(pairs[i, j]) for i, a in enumerate(llms)
                               for j, b in enumerate(prompts)}}

    def variances(self, families: bool) -> dict[str, float]:
        """Finite-population variances of the crossed effects and the reference, σ² of the
        nested components, and the residual, as the E1 model defines them."""
        S = self.sums
        K, L, P, R = self.shape
        U, T = self.n_units, self.n_teachers
        nu, ng = self.units_per_transcript, self.transcripts_per_teacher
        G = U // nu
        fam = self.llm_family
        F = int(fam.max()) + 1
        m = S["sum_e"] / U  # (K, L, P, R) design means
        m_l = m.mean(axis=(2, 3))
        m_f = np.stack([m_l[:, fam == f].mean(axis=1) for f in range(F)], axis=1)
        m_k = m_l.mean(axis=1)
        # Sums of squares of the errors minus those of the design means (what is left once the
        # crossed effects are removed: SS(e − m) = SS(e) − U SS(m) for these balanced nests).
        ss_res = S["ss_res"] - U * ((m - m_l[..., None, None]) ** 2).sum(axis=(1, 2, 3))
        ss_llm = S["ss_llm"] - U * P * R * ((m_l - m_f[:, fam]) ** 2).sum(axis=1)
        n_f = np.bincount(fam, minlength=F)
        ss_fam = S["ss_fam"] - U * P * R * (n_f * (m_f - m_k[:, None]) ** 2).sum(axis=1)
        lut = P * R > 1  # an LLM rates a cell more than once
        lineage = families and F > 1 and bool((n_f > 1).any())
        v, _ = crossed_decomposition(m.mean(axis=3), fam if families else None)
        df_res = U * L * (P * R - 1)
        df_llm, df_fam = U * (L - F), U * (F - 1)
        if not lineage:  # LLMs within the cell, families not told apart
            ss_llm, df_llm, ss_fam, df_fam = ss_llm + ss_fam, df_llm + df_fam, None, 0
        if lut:
            s2e = ss_res / df_res
            ms_llm = ss_llm.sum() / (K * df_llm)
            v["llm:unit:task"] = max((ms_llm - s2e.mean()) / (P * R), 0.0)
        else:  # one rating per LLM and cell: the LLM's own error is residual
            s2e = ss_llm / df_llm
            ms_llm = float(s2e.mean())
        if lineage:
            v["lineage"] = max((ss_fam.sum() / (K * df_fam) - ms_llm) / (L // F * P * R), 0.0)
        v["residual"] = float(np.mean(s2e))
        noise = (float(np.mean(s2e)) / (L * P * R) + v.get("llm:unit:task", 0.0) / L
                 + v.get("lineage", 0.0) / F)
        ms_cell = (S["ss_cell"] - U * float(((m_k - m_k.mean()) ** 2).sum())) / (U * (K - 1))
        # The experts' severities: least squares of unit means on the experts' weights.
        ww, w_sum = S["ww"], S["w_sum"]
        rho = np.linalg.lstsq(ww, S["w_e"] - m_k.mean() * w_sum, rcond=None)[0]
        w_mean = w_sum / U
        v["reference"] = max(float(rho @ (ww / U) @ rho - (rho @ w_mean) ** 2), 0.0)
        ss = {name: S[f"A_{name}"] - 2 * rho @ S[f"b_{name}"] + rho @ S[f"C_{name}"] @ rho
              for name in ("unit", "transcript")}
        te = S["te_sum"] - rho @ S["te_wsum"]
        te_sq = S["te_sq"] - 2 * rho @ S["te_w"] + rho @ S["te_ww"] @ rho
        ms_unit = ss["unit"] / (G * (nu - 1))
        ms_tr = ss["transcript"] / (T * (ng - 1))
        ms_te = (te_sq - te**2 / T) / (T - 1)
        v["unit:task"] = ms_cell - noise
        v["unit"] = ms_unit - ms_cell / K
        v["transcript"] = ms_tr - ms_unit / nu
        v["teacher"] = ms_te - ms_tr / ng
        return {k: max(float(x), 0.0) for k, x in v.items()}


def crossed_decomposition(m3: np.ndarray, llm_family: np.ndarray | None
                          ) -> tuple[dict[str, float], np.ndarray]:
    """Zero-sum decomposition of design-cell means m3[task, llm, prompt] into main effects and
    two- and three-way interactions; each component's variance over the (balanced) ratings.
    Returns the variances and the three-way effects."""
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
    three = m3 - fitted
    v = {"task": float(np.mean(task**2)), "prompt": float(np.mean(prompt**2)),
         "llm:prompt": float(np.mean(lp**2)), "llm:task": float(np.mean(lk**2)),
         "prompt:task": float(np.mean(pk**2)), "llm:prompt:task": float(np.mean(three**2))}
    if llm_family is not None:
        F = int(llm_family.max()) + 1
        fam = np.array([llm[llm_family == f].mean() for f in range(F)])
        v["family"] = float(np.mean(fam[llm_family] ** 2))
        v["llm"] = float(np.mean((llm - fam[llm_family]) ** 2))
    else:
        v["llm"] = float(np.mean(llm**2))
    return v, three


def true_shares(variances: dict[str, float]) -> dict[str, dict[str, float]]:
    shares, aggregates = finite_population_shares(variances)
    return {"shares": shares, "aggregates": aggregates}
