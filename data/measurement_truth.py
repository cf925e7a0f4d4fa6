"""True values of the joint measurement model's quantities (E2, and E1 net of the reference),
computed on a simulated population far larger than the data (MEASUREMENT.md, "Truth").

Everything is a moment of the *observed* scores (rounded and clipped as the data are), on the
task's expert-SD scale, at three levels of the data's design:

- cell: one rating of a unit × task (replicate 1), a single expert rating (the unit's first
  rater, drawn at random), and true quality τ;
- lesson / teacher: the mean over the lesson's (teacher's) units and replicates, the mean of
  those units' single expert ratings, and the lesson's (teacher's) true quality.

True quality is on the experts' scale: τ(θ) = the expected expert score of a cell whose latent
quality is θ (over the raters, each equally likely, and their noise), so that "an expert
rating = τ + an error of mean 0", as the model writes it. A lesson's true quality is E[τ | the
lesson] (its units' latent deviations integrated out), a teacher's likewise. On continuous
scores τ is linear in θ.

E1 net of the reference, per task, from the cell-level moments: λ*_s = Cov(y_s, τ)/Var(τ);
the covariances of the residuals y_s − λ*_s τ between sources are, averaged over pairs of
sources of different families, the shared deviation Vs; over pairs of different LLMs of one
family, Vs + lineage; over pairs of prompts of one LLM, Vs + lineage + the LLM's own cell
error (the model's two terms below the cell; E1 counts both as lineage). Attributable =
Var_s(mean y_s) + Var_s(λ*)·Var(τ) (over the sources, ddof 0); compression = (mean λ* −
1)²·Var(τ); residual = mean_s Var(y_s − λ*_s τ) − the three; reference = Var(reference − τ),
the reference being the mean of the unit's expert ratings.
"""

from __future__ import annotations

import numpy as np
from scipy.special import ndtr

from .ensembles import majority

LEVELS = ("cell", "lesson", "teacher")
_GRID = np.linspace(-9.0, 9.0, 3601)


def expected_expert(theta: np.ndarray, severity: np.ndarray, noise_sd: float, centre: float,
                    spread: float, lo: float, hi: float, continuous: bool) -> np.ndarray:
    """E[expert score | latent θ]: rounded and clipped c + s(θ + ρ + ε), ρ uniform over the
    raters' severities, ε ~ N(0, noise_sd²)."""
    x = centre + spread * (np.asarray(theta)[..., None] + severity)
    if continuous:
        return x.mean(axis=-1)
    out = np.full(x.shape, lo)
    for j in np.arange(lo + 1, hi + 1):
        out = out + ndtr((x - (j - 0.5)) / (spread * noise_sd))
    return out.mean(axis=-1)


def _smoothed(tau_grid: np.ndarray, var: float) -> np.ndarray:
    """E[τ(θ + z)], z ~ N(0, var), on the grid (what a lesson's or teacher's true quality is
    as a function of its latent part)."""
    if var <= 0:
        return tau_grid
    step = _GRID[1] - _GRID[0]
    half = int(np.ceil(8 * np.sqrt(var) / step))
    z = np.arange(-half, half + 1) * step
    k = np.exp(-0.5 * z**2 / var)
    k /= k.sum()
    padded = np.pad(tau_grid, half, mode="edge")
    return np.convolve(padded, k, mode="valid")


class AgreementAccumulator:
    """Sums and cross-products per task and level of [sources…, expert, true quality], and the
    reference's error, over blocks of a simulated population."""

    def __init__(self, tasks: dict, quality_variances: dict, severity: np.ndarray,
                 noise_sd: float, expert_sd: np.ndarray, continuous: bool) -> None:
        self.tasks = tasks  # name → (lo, hi, centre, spread)
        K = len(tasks)
        self.expert_sd = np.asarray(expert_sd, float)
        q = quality_variances
        self.tau_grid = []
        self.tau_lesson = []
        self.tau_teacher = []
        for lo, hi, c, s in tasks.values():
            g = expected_expert(_GRID, severity, noise_sd, c, s, lo, hi, continuous)
            self.tau_grid.append(g)
            self.tau_lesson.append(_smoothed(g, q["unit"] + q["unit:task"]))
            self.tau_teacher.append(_smoothed(g, q["transcript"] + q["unit"] + q["unit:task"]))
        self.continuous = continuous
        keys = [*LEVELS, *(f"vote:{lv}" for lv in LEVELS)]  # vote: E4's majority vote
        self.n = {lv: np.zeros(K) for lv in keys}
        self.s: dict[str, list] = {lv: [0.0] * K for lv in keys}
        self.ss: dict[str, list] = {lv: [0.0] * K for lv in keys}
        self.ref = np.zeros((K, 3))  # n, Σ d, Σ d² of reference − τ

    def _acc(self, level: str, k: int, x: np.ndarray) -> None:
        self.n[level][k] += len(x)
        self.s[level][k] = self.s[level][k] + x.sum(axis=0)
        self.ss[level][k] = self.ss[level][k] + x.T @ x

    def add(self, b: dict, units_per_transcript: int, transcripts_per_teacher: int,
            value_added: np.ndarray) -> None:
        """``b``: a simulated block (``simulate._block``); ``value_added``: its teachers'
        (a last column at teacher level)."""
        llm = b["llm"]  # (U, K, L, P, R)
        U, K, L, P, R = llm.shape
        nu, ng = units_per_transcript, transcripts_per_teacher
        lesson_lat = np.repeat(b["teacher_q"], ng) + b["tr_q"]  # (G,)
        for k in range(K):
            sd = self.expert_sd[k]
            tau = np.interp(b["theta"][:, k], _GRID, self.tau_grid[k])
            y = llm[:, k].reshape(U, L * P, R) / sd  # sources in llm-major order
            e = b["e1"][:, k] / sd
            self._acc("cell", k, np.column_stack([y[:, :, 0], e, tau / sd]))
            ymean = y.mean(axis=2)
            if not self.continuous:
                lo, hi = self.tasks[list(self.tasks)[k]][:2]
                vote = majority(llm[:, k, :, :, 0].reshape(U, L * P), np.arange(lo, hi + 1)) / sd
                self._acc("vote:cell", k, np.column_stack([vote, e, tau / sd]))
            for level, size, lat, fn in (("lesson", nu, lesson_lat, self.tau_lesson[k]),
                                         ("teacher", nu * ng, b["teacher_q"],
                                          self.tau_teacher[k])):
                ym = ymean.reshape(-1, size, L * P).mean(axis=1)
                em = e.reshape(-1, size).mean(axis=1)
                true = np.interp(lat, _GRID, fn) / sd
                va = [value_added] * (level == "teacher")
                self._acc(level, k, np.column_stack([ym, em, true, *va]))
                if not self.continuous:
                    vm = vote.reshape(-1, size).mean(axis=1)
                    self._acc(f"vote:{level}", k, np.column_stack([vm, em, true, *va]))
            ref = np.where(b["second"], (b["e1"][:, k] + b["e2"][:, k]) / 2, b["e1"][:, k])
            d = (ref - tau) / sd
            self.ref[k] += (len(d), d.sum(), d @ d)

    def _cov(self, level: str, k: int) -> np.ndarray:
        n = self.n[level][k]
        m = self.s[level][k] / n
        return self.ss[level][k] / n - np.outer(m, m)

    def _value_added(self, k: int, S: int) -> dict:
        """E3 at teacher level: each source's, the experts' and true quality's correlation
        with value-added, and each source's misalignment (source − expert mean) with it."""
        c = self._cov("teacher", k)
        V, E = S + 2, S
        corr = c[:, V] / np.sqrt(np.diag(c) * c[V, V])
        mis_cov = c[:S, V] - c[E, V]
        mis_var = np.diag(c)[:S] + c[E, E] - 2 * c[:S, E]
        return {"sources": corr[:S].tolist(), "expert": float(corr[E]),
                "quality": float(corr[S + 1]),
                "misalignment": (mis_cov / np.sqrt(mis_var * c[V, V])).tolist()}

    def _ensembles(self, k: int, S: int, weights: dict[str, np.ndarray]) -> dict:
        """E4: each ensemble (a weighted mean of the sources' single ratings) against a
        single expert and true quality at every level, and value-added at teacher level."""
        out = {}
        E, Q, V = S, S + 1, S + 2
        covs = {lv: self._cov(lv, k) for lv in LEVELS}
        for name, w in weights.items():
            row: dict = {}
            for level, c in covs.items():
                var = w @ c[:S, :S] @ w
                row[level] = {"expert": float(w @ c[:S, E] / np.sqrt(var * c[E, E])),
                              "quality": float(w @ c[:S, Q] / np.sqrt(var * c[Q, Q]))}
            c = covs["teacher"]
            var = w @ c[:S, :S] @ w
            row["va"] = float(w @ c[:S, V] / np.sqrt(var * c[V, V]))
            mis_var = var + c[E, E] - 2 * w @ c[:S, E]
            row["va_misalignment"] = float((w @ c[:S, V] - c[E, V]) / np.sqrt(mis_var * c[V, V]))
            out[name] = row
        return out

    def _majority(self, k: int) -> dict:
        """E4's majority vote (``ensembles.majority`` of every source's rounded rating of a
        cell): with a single expert and true quality at every level, with value-added and its
        misalignment at teacher level; empty on continuous scores (no vote)."""
        if self.continuous:
            return {}
        out: dict = {}
        for level in LEVELS:
            c = self._cov(f"vote:{level}", k)
            r = c / np.sqrt(np.outer(np.diag(c), np.diag(c)))
            out[level] = {"expert": float(r[0, 1]), "quality": float(r[0, 2])}
        out["va"] = float(r[0, 3])
        out["va_misalignment"] = float((c[0, 3] - c[1, 3]) / np.sqrt(
            (c[0, 0] + c[1, 1] - 2 * c[0, 1]) * c[3, 3]))
        return out

    def _designs(self, k: int, S: int, designs: dict) -> dict:
        """E5's expected correlations: per design "k×q", the mean over its subsets of the
        average's cell-level correlation with true quality and teacher-level with value-added."""
        out = {}
        for (n_llms, n_prompts), rows in designs.items():
            each = self._ensembles(k, S, {str(i): w for i, w in enumerate(rows)}).values()
            out[f"{n_llms}x{n_prompts}"] = {
                "quality": float(np.mean([r["cell"]["quality"] for r in each])),
                "va": float(np.mean([r["va"] for r in each]))}
        return out

    def result(self, source_names: list[str], source_llm: np.ndarray,
               source_family: np.ndarray, ensembles: dict[str, np.ndarray] | None = None,
               designs: dict[tuple[int, int], np.ndarray] | None = None) -> dict:
        """Per task: the correlation matrix of the sources, each source's correlation with a
        single expert and with true quality, the noise ceiling, the mean inter-source and
        source–expert correlations, at every level; the net-E1 variances; E3; E4 for the
        ``ensembles`` (name → weights over the sources); E5's expected correlations for the
        ``designs`` ((k, q) → one row of weights per subset)."""
        S = len(source_names)
        out: dict = {"sources": list(source_names), "tasks": list(self.tasks), "levels": {},
                     "net": {}}
        off = ~np.eye(S, dtype=bool)
        for level in LEVELS:
            per_task = {}
            for k, task in enumerate(self.tasks):
                c = self._cov(level, k)
                sd = np.sqrt(np.diag(c))
                r = c / np.outer(sd, sd)
                src = r[:S, :S]
                per_task[task] = {
                    "sources": src.tolist(), "expert": r[:S, S].tolist(),
                    "quality": r[:S, S + 1].tolist(), "ceiling": float(r[S, S + 1]),
                    "mean_inter": float(src[off].mean()) if S > 1 else float("nan"),
                    "mean_expert": float(r[:S, S].mean())}
            out["levels"][level] = per_task
        out["value_added"] = {task: self._value_added(k, S) for k, task in enumerate(self.tasks)}
        out["ensembles"] = {task: self._ensembles(k, S, ensembles or {})
                            for k, task in enumerate(self.tasks)}
        out["design_correlations"] = {task: self._designs(k, S, designs or {})
                                      for k, task in enumerate(self.tasks)}
        out["majority_vote"] = {task: self._majority(k) for k, task in enumerate(self.tasks)}
        for k, task in enumerate(self.tasks):
            c = self._cov("cell", k)
            m = self.s["cell"][k] / self.n["cell"][k]
            vq = c[S + 1, S + 1]
            lam = c[:S, S + 1] / vq
            dev = (c[:S, :S] - np.outer(lam, c[S + 1, :S]) - np.outer(c[:S, S + 1], lam)
                   + np.outer(lam, lam) * vq)
            same_llm = source_llm[:, None] == source_llm[None, :]
            same_fam = source_family[:, None] == source_family[None, :]
            classes = {"other": off & ~same_fam, "family": off & same_fam & ~same_llm,
                       "llm": off & same_llm}
            cov = {c: float(dev[mask].mean()) if mask.any() else np.nan
                   for c, mask in classes.items()}
            vs = cov["other"]
            fam = cov["family"] - vs if np.isfinite(cov["family"]) else 0.0
            own = cov["llm"] - vs - fam if np.isfinite(cov["llm"]) else 0.0
            n, s1, s2 = self.ref[k]
            net = {"attributable": float(np.var(m[:S]) + np.var(lam) * vq),
                   "compression": float((lam.mean() - 1.0) ** 2 * vq),
                   "shared_deviation": vs, "lineage": fam + own,
                   "residual": float(np.diag(dev).mean() - vs - fam - own),
                   "reference": float(s2 / n - (s1 / n) ** 2),
                   "quality_variance": float(vq), "loading": lam.tolist()}
            net["shared"] = net["compression"] + net["shared_deviation"]
            out["net"][task] = net
        return out
