"""Test helpers: tiny random designs and the NCTE reshaping."""

from __future__ import annotations

import numpy as np
import pandas as pd


def tiny_unbalanced_frame(seed: int = 0, drop: float = 0.25) -> pd.DataFrame:
    """A misalignment frame with unequal nesting, missing ratings and some replicates."""
    rng = np.random.default_rng(seed)
    rows = []
    llms = [("m/a", "f1"), ("m/b", "f1"), ("m/c", "f2"), ("m/d", "f2")]
    unit = 0
    for t in range(3):
        for g in range(rng.integers(1, 4)):
            for _ in range(rng.integers(1, 4)):
                for task in ("T1", "T2", "T3"):
                    for llm, fam in llms:
                        for prompt in ("base", "cot"):
                            if rng.random() < drop:
                                continue
                            reps = 2 if rng.random() < 0.15 else 1
                            for r in range(reps):
                                rows.append({"unit_id": f"u{unit}", "transcript_id": f"g{t}_{g}",
                                             "teacher_id": f"t{t}", "task": task, "llm": llm,
                                             "family": fam, "prompt": prompt,
                                             "replicate": str(r + 1), "score": 0.0,
                                             "reference": 0.0, "error": rng.normal()})
                unit += 1
    return pd.DataFrame(rows)


def ncte_long(path) -> pd.DataFrame:
    """Reshape the NCTE CLASS file to the long ratings format (missing scores stay empty)."""
    wide = pd.read_csv(path, dtype=str, keep_default_na=False)
    tasks = ["CLPC", "CLBM", "CLINSTD"]
    long = wide.melt(id_vars=["NCTETID", "OBSID", "CHAPNUM", "RATERID"], value_vars=tasks,
                     var_name="task", value_name="score")
    return pd.DataFrame({
        "unit_id": long["OBSID"] + "-" + long["CHAPNUM"], "task": long["task"],
        "rater": "expert_" + long["RATERID"], "rater_kind": "expert", "prompt": "",
        "score": long["score"], "transcript_id": long["OBSID"], "teacher_id": long["NCTETID"]})


def free_point(fast, x: np.ndarray) -> dict[str, np.ndarray]:
    """A free vector of the fast path as the PyMC model's point (value variable → array)."""
    point, at = {}, 0
    for name, shape in zip(fast.value_names, fast.value_shapes, strict=True):
        n = int(np.prod(shape))
        point[name] = x[at:at + n].reshape(shape)
        at += n
    return point
