"""Simulated expert ratings with known variance components, for G-study recovery tests.

Design as in NCTE: teachers, lessons nested in teachers, segments nested in lessons, and one
rater per lesson drawn from a pool (raters crossed with teachers across lessons). Scores are
left continuous, so the generating σ's are exactly the superpopulation components the G-study
estimates (rounding to a 1–7 scale would change them).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .experts import COLUMNS, ExpertRatings

DEFAULT_SIGMAS = {"teacher": 0.55, "lesson": 0.45, "rater": 0.35, "residual": 0.8}


@dataclass
class ExpertTruth:
    sigma: dict[str, float]
    teacher_corr: float

    @property
    def shares(self) -> dict[str, float]:
        total = sum(s**2 for s in self.sigma.values())
        return {k: s**2 / total for k, s in self.sigma.items()}


def simulate_experts(n_teachers: int = 150, lessons: int = 4, segments: int = 4,
                     n_raters: int = 15, sigmas: dict[str, float] | None = None,
                     dimensions: tuple[str, ...] = ("D1",), teacher_corr: float = 0.0,
                     mean: float = 4.0, seed: int = 0) -> tuple[ExpertRatings, ExpertTruth]:
    """Each dimension has the same σ's; teacher effects correlate ``teacher_corr`` across
    dimensions (other effects are independent per dimension)."""
    sig = dict(DEFAULT_SIGMAS) | (sigmas or {})
    rng = np.random.default_rng(seed)
    k = len(dimensions)
    corr = np.full((k, k), teacher_corr) + (1 - teacher_corr) * np.eye(k)
    teacher_eff = rng.multivariate_normal(np.zeros(k), corr * sig["teacher"] ** 2,
                                          size=n_teachers)
    rater_eff = rng.normal(0, sig["rater"], size=(n_raters, k))
    n_lessons = n_teachers * lessons
    lesson_teacher = np.repeat(np.arange(n_teachers), lessons)
    lesson_rater = rng.integers(0, n_raters, size=n_lessons)
    lesson_eff = rng.normal(0, sig["lesson"], size=(n_lessons, k))
    seg_lesson = np.repeat(np.arange(n_lessons), segments)
    seg_no = np.tile(np.arange(1, segments + 1), n_lessons)
    rows = []
    for j, dim in enumerate(dimensions):
        t = lesson_teacher[seg_lesson]
        r = lesson_rater[seg_lesson]
        y = (mean + teacher_eff[t, j] + lesson_eff[seg_lesson, j] + rater_eff[r, j]
             + rng.normal(0, sig["residual"], size=len(seg_lesson)))
        rows.append(pd.DataFrame({
            "segment": [f"L{lesson}-{s}" for lesson, s in zip(seg_lesson, seg_no, strict=True)],
            "lesson": [f"L{lesson}" for lesson in seg_lesson], "teacher": [f"T{i}" for i in t],
            "school": "", "district": "", "rater": [f"R{i}" for i in r], "dimension": dim,
            "score": y}))
    frame = pd.concat(rows, ignore_index=True)[list(COLUMNS)]
    ratings = ExpertRatings(frame, f"simulated (seed {seed})", {d: 0 for d in dimensions}, [],
                            {d: (-np.inf, np.inf) for d in dimensions})
    return ratings, ExpertTruth({k: float(v) for k, v in sig.items()}, teacher_corr)
