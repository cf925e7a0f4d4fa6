"""A simulated study with known truth, calibrated to the reference design (docs/estimands.md).

Generative story, per task on a standardized latent scale (task centre + SD in rubric points):
true quality θ = teacher + transcript + unit + unit×task; experts score θ plus rater severity and
noise; LLMs score (1 − compression)·θ plus the misalignment error: bias, llm, family, prompt,
task, their two- and three-way interactions, a unit×task error every LLM shares, unit,
transcript and teacher errors, a family×unit×task error the LLMs of one family share
(lineage), an llm×unit×task error one LLM makes on a cell whatever the prompt, and noise whose
SD differs by task. Every score is rounded and clipped to its task's ordinal scale (or, with
``continuous=True``, left on the latent scale: no rounding, no clipping). Teacher
value-added depends on true teaching quality; each LLM has a benchmark score.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
from pandas.api.types import union_categoricals

from .atomic import atomic_write, atomic_write_text
from .categorical import clean_text
from .ensembles import design_weights, ensemble_weights
from .io import RatingsTable
from .measurement import SOURCE_SEPARATOR
from .measurement_truth import AgreementAccumulator
from .schema import RATING_COLUMNS
from .simulate_config import (  # noqa: F401  (re-exported: the simulator's public names)
    ERROR_VARIANCES,
    LLMS,
    PRESETS,
    PROMPTS,
    QUALITY_VARIANCES,
    RESIDUAL_TASK_SD,
    TASKS,
    SimulationConfig,
)
from .simulate_side import benchmarks, value_added
from .truth import AnovaAccumulator, true_shares


@dataclass
class SimulatedStudy:
    ratings: pd.DataFrame
    tasks: pd.DataFrame
    teachers: pd.DataFrame
    llms: pd.DataFrame
    truth: dict
    config: SimulationConfig

    def table(self) -> RatingsTable:
        return RatingsTable(ratings=self.ratings, tasks=self.tasks,
                            dropped=pd.DataFrame(columns=["file", "row", "column", "value",
                                                          "reason"]),
                            source="<simulated>")

    def write(self, out_dir: str | Path, fmt: str = "parquet") -> dict[str, Path]:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        paths = {}
        for name, df in (("ratings", self.ratings), ("tasks", self.tasks),
                         ("teachers", self.teachers), ("llms", self.llms)):
            ext = "parquet" if (fmt == "parquet" and name == "ratings") else "csv"
            p = out / f"{name}.{ext}"
            if ext == "parquet":
                atomic_write(p, lambda t, df=df: df.to_parquet(t, index=False))
            else:
                atomic_write(p, lambda t, df=df: df.to_csv(t, index=False))
            paths[name] = p
        paths["truth"] = atomic_write_text(out / "truth.json", json.dumps(self.truth, indent=2))
        return paths


def _zero_sum(rng: np.random.Generator, shape: tuple[int, ...], var: float) -> np.ndarray:
    """Effects centred on every axis and rescaled to finite-population variance ``var`` exactly."""
    x = rng.standard_normal(shape)
    for ax in range(len(shape)):
        x = x - x.mean(axis=ax, keepdims=True)
    df = np.prod([n - 1 for n in shape])
    return x * np.sqrt(var * df / (x**2).sum())


def _fixed_effects(cfg: SimulationConfig, rng: np.random.Generator) -> dict[str, np.ndarray]:
    K, L, P = len(cfg.tasks), len(cfg.llms), len(cfg.prompts)
    v = cfg.error_variances
    fam_names = sorted({f for _, f in cfg.llms})
    fam = np.array([fam_names.index(f) for _, f in cfg.llms])
    F = len(fam_names)
    fam_eff = _zero_sum(rng, (F,), v["family"]) if F > 1 else np.zeros(1)
    within = rng.standard_normal(L)
    for f in range(F):
        within[fam == f] -= within[fam == f].mean()
    within *= np.sqrt(v["llm"] * (L - F) / (within**2).sum())
    return {
        "llm": within + fam_eff[fam], "prompt": _zero_sum(rng, (P,), v["prompt"]),
        "task": _zero_sum(rng, (K,), v["task"]),
        "llm:prompt": _zero_sum(rng, (L, P), v["llm:prompt"]),
        "llm:task": _zero_sum(rng, (L, K), v["llm:task"]),
        "prompt:task": _zero_sum(rng, (P, K), v["prompt:task"]),
        "llm:prompt:task": _zero_sum(rng, (L, P, K), v.get("llm:prompt:task", 0.0)),
        "family_index": fam,
    }


def _severity(cfg: SimulationConfig) -> np.ndarray:
    """The experts' severities (fixed by the seed: the same raters in data and population)."""
    return np.random.default_rng(cfg.seed + 7).normal(0, cfg.expert_severity_sd, cfg.n_experts)


def _block(cfg: SimulationConfig, fx: dict, rng: np.random.Generator, n_teachers: int) -> dict:
    """Generate ``n_teachers`` whole teachers: expert and LLM scores on each task's scale."""
    ng, nu = cfg.transcripts_per_teacher, cfg.units_per_transcript
    T, G, U = n_teachers, n_teachers * ng, n_teachers * ng * nu
    K, L, P, R = len(cfg.tasks), len(cfg.llms), len(cfg.prompts), cfg.replicates
    q, v = QUALITY_VARIANCES, cfg.error_variances
    sd = np.sqrt
    teacher_q = rng.normal(0, sd(q["teacher"]), T)
    tr_q = rng.normal(0, sd(q["transcript"]), G)
    unit_q = rng.normal(0, sd(q["unit"]), U)
    t_of_g = np.repeat(np.arange(T), ng)
    g_of_u = np.repeat(np.arange(G), nu)
    t_of_u = t_of_g[g_of_u]
    theta = (teacher_q[t_of_u] + tr_q[g_of_u] + unit_q)[:, None] + rng.normal(
        0, sd(q["unit:task"]), (U, K))
    centre = np.array([TASKS[t][2] for t in cfg.tasks])
    spread = np.array([TASKS[t][3] for t in cfg.tasks])
    lo = np.array([TASKS[t][0] for t in cfg.tasks], dtype=float)
    hi = np.array([TASKS[t][1] for t in cfg.tasks], dtype=float)

    def to_scale(latent: np.ndarray, axis_task: int) -> np.ndarray:
        shape = [1] * latent.ndim
        shape[axis_task] = K
        c, s = centre.reshape(shape), spread.reshape(shape)
        if cfg.continuous:
            return c + s * latent
        return np.clip(np.rint(c + s * latent), lo.reshape(shape), hi.reshape(shape))

    # Experts: one rater scores every task of a unit; some units get a second rater.
    rater1 = rng.integers(0, cfg.n_experts, U)
    rater2 = (rater1 + rng.integers(1, cfg.n_experts, U)) % cfg.n_experts
    second = rng.random(U) < cfg.double_rated
    severity = _severity(cfg)
    e1 = to_scale(theta + severity[rater1][:, None] + rng.normal(0, cfg.expert_noise_sd, (U, K)), 1)
    e2 = to_scale(theta + severity[rater2][:, None] + rng.normal(0, cfg.expert_noise_sd, (U, K)), 1)
    e2[~second] = np.nan

    err = (cfg.bias
           + fx["llm"][None, None, :, None] + fx["prompt"][None, None, None, :]
           + fx["task"][None, :, None, None] + fx["llm:prompt"][None, None, :, :]
           + fx["llm:task"].T[None, :, :, None] + fx["prompt:task"].T[None, :, None, :]
           + np.moveaxis(fx["llm:prompt:task"], -1, 0)[None])
    shared_cell = rng.normal(0, sd(v["unit:task"]), (U, K))
    shared_unit = rng.normal(0, sd(v["unit"]), U)
    shared_lesson = rng.normal(0, sd(v["transcript"]), G)
    teacher_s = rng.normal(0, sd(v["teacher"]), T)  # the teachers' shared deviation (E3)
    shared = shared_cell + (shared_unit + shared_lesson[g_of_u] + teacher_s[t_of_u])[:, None]
    fam = fx["family_index"]
    own = (rng.normal(0, sd(v.get("lineage", 0.0)), (U, K, int(fam.max()) + 1))[:, :, fam]
           + rng.normal(0, sd(v.get("llm:unit:task", 0.0)), (U, K, L)))
    latent = (((1 - cfg.compression) * theta + shared)[:, :, None, None, None] + err[..., None]
              + own[:, :, :, None, None])
    noise_sd = sd(v["residual"]) * np.resize(np.asarray(cfg.residual_task_sd, float), K)
    latent = latent + rng.normal(0, 1, (U, K, L, P, R)) * noise_sd[None, :, None, None, None]
    llm_scores = to_scale(latent, 1)
    return {"teacher_q": teacher_q, "teacher_s": teacher_s, "tr_q": tr_q, "theta": theta,
            "e1": e1, "e2": e2, "rater1": rater1, "rater2": rater2, "second": second,
            "llm": llm_scores, "lo": lo, "hi": hi}


def _reference_weights(b: dict, n_experts: int) -> np.ndarray:
    """(units, experts): each unit's reference as weights on the experts (one rater scores every
    task of a unit)."""
    U = len(b["rater1"])
    w = np.zeros((U, n_experts))
    w[np.arange(U), b["rater1"]] += np.where(b["second"], 0.5, 1.0)
    w[np.arange(U)[b["second"]], b["rater2"][b["second"]]] += 0.5
    return w


def _errors(b: dict, scale: np.ndarray) -> np.ndarray:
    ref = np.where(b["second"][:, None], (b["e1"] + b["e2"]) / 2, b["e1"])
    return (b["llm"] - ref[:, :, None, None, None]) / scale[None, :, None, None, None]


def _expert_sd(b: dict) -> np.ndarray:
    both = np.concatenate([b["e1"], b["e2"][b["second"]]], axis=0)
    return np.nanstd(both, axis=0, ddof=1)


def _categorical(codes: np.ndarray, labels) -> pd.Categorical:
    """Codes with plain-object labels, so blocks built apart can be unioned."""
    return pd.Categorical.from_codes(codes, categories=pd.Index(
        np.asarray(list(labels), dtype=object), dtype=object))


def scaled(cfg: SimulationConfig, scale: float) -> SimulationConfig:
    """The same study with ``scale`` × the teachers (and so units and ratings).

    The truth population stays about the reference preset's 100× size in teachers, so a 10×
    study does not simulate a 1000× population.
    """
    if scale <= 0:
        raise ValueError(f"scale must be positive, not {scale}")
    n = max(2, round(cfg.n_teachers * scale))
    return replace(cfg, n_teachers=n,
                   population_factor=max(10, round(cfg.population_factor / max(scale, 1.0))))


def _agreement(cfg: SimulationConfig, expert_sd: np.ndarray) -> AgreementAccumulator:
    return AgreementAccumulator({t: TASKS[t] for t in cfg.tasks}, QUALITY_VARIANCES,
                                _severity(cfg), cfg.expert_noise_sd, expert_sd, cfg.continuous)


def _population(cfg: SimulationConfig, units_per_teacher: int) -> tuple[int, int]:
    """Teachers in the truth's population (100× the data's by default, at least 2,000) and
    per block (≈ 20,000 units)."""
    return (max(cfg.n_teachers * cfg.population_factor, 2000),
            max(1, 20000 // units_per_teacher))


def _design_truth(cfg: SimulationConfig, fx: dict, expert_sd: np.ndarray, lessons: int,
                  segments: int, names: list[str], ensembles: dict[str, np.ndarray]) -> dict:
    """E2–E4's truth for teachers scored over ``lessons`` × ``segments``: a population of its
    own drawn with the study's fixed effects and that design."""
    d = replace(cfg, transcripts_per_teacher=lessons, units_per_transcript=segments)
    L, P = len(cfg.llms), len(cfg.prompts)
    agree = _agreement(cfg, expert_sd)
    rng = np.random.default_rng([cfg.seed, 3, lessons, segments])
    n_pop, chunk = _population(cfg, lessons * segments)
    for done in range(0, n_pop, chunk):
        pb = _block(d, fx, rng, min(chunk, n_pop - done))
        agree.add(pb, segments, lessons, value_added(d, pb, QUALITY_VARIANCES, rng))
    return agree.result(names, np.repeat(np.arange(L), P), np.repeat(fx["family_index"], P),
                        ensembles)


def simulate(preset: str | SimulationConfig = "small", seed: int | None = None,
             compute_truth: bool = True, scale: float = 1.0,
             truth_designs: tuple[tuple[int, int], ...] = ()) -> SimulatedStudy:
    """Simulate a full study; ``truth`` holds the exact shares a correct fit should recover.
    ``truth_designs``: (lessons, segments) per teacher at which E2–E4's truth is computed too
    (``truth["measurement_at_design"]["NxM"]``)."""
    cfg = PRESETS[preset] if isinstance(preset, str) else preset
    if seed is not None:
        cfg = replace(cfg, seed=seed)
    if scale != 1.0:
        cfg = scaled(cfg, scale)
    rng = np.random.default_rng(cfg.seed)
    fx = _fixed_effects(cfg, rng)
    b = _block(cfg, fx, rng, cfg.n_teachers)
    K, L, P, R = len(cfg.tasks), len(cfg.llms), len(cfg.prompts), cfg.replicates
    ng, nu = cfg.transcripts_per_teacher, cfg.units_per_transcript
    U = cfg.n_units
    w = max(5, len(str(U)))  # ids sort in creation order at any size
    unit_ids = np.array([f"u{i:0{w}d}" for i in range(U)])
    tr_ids = np.array([f"g{i:0{w}d}" for i in range(U // nu)])[np.arange(U) // nu]
    te_ids = np.array([f"t{i:0{w - 1}d}" for i in range(cfg.n_teachers)])[
        np.arange(U) // (nu * ng)]
    experts = np.array([f"expert_{i + 1:02d}" for i in range(cfg.n_experts)])

    frames = []
    for key, rater, mask in (("e1", "rater1", np.ones(U, bool)), ("e2", "rater2", b["second"])):
        uu, kk = np.nonzero(np.broadcast_to(mask[:, None], (U, K)))
        frames.append(pd.DataFrame({
            "unit_id": unit_ids[uu], "task": np.array(cfg.tasks)[kk],
            "rater": experts[b[rater][uu]],
            "rater_kind": "expert", "prompt": "", "score": b[key][uu, kk], "replicate": "1",
            "transcript_id": tr_ids[uu], "teacher_id": te_ids[uu], "family": ""}))
    # The LLM block is the bulk (10⁶–10⁷ rows): built as codes, never as strings.
    idx = np.indices((U, K, L, P, R)).reshape(5, -1)
    llm_names = np.array([n for n, _ in cfg.llms])
    fams = np.array([f for _, f in cfg.llms])
    fam_code, fam_names = pd.factorize(fams)
    cat = _categorical
    unit_tr = np.arange(U) // nu
    llm_frame = pd.DataFrame({
        "unit_id": cat(idx[0], unit_ids), "task": cat(idx[1], cfg.tasks),
        "rater": cat(idx[2], llm_names), "rater_kind": cat(np.zeros(idx.shape[1], int), ["llm"]),
        "prompt": cat(idx[3], cfg.prompts), "score": b["llm"].reshape(-1),
        "replicate": cat(idx[4], [str(r + 1) for r in range(R)]),
        "transcript_id": cat(unit_tr[idx[0]], np.unique(tr_ids)),
        "teacher_id": cat(unit_tr[idx[0]] // ng, np.unique(te_ids)),
        "family": cat(fam_code[idx[2]], fam_names)})
    del idx
    experts_frame = pd.concat(frames, ignore_index=True)
    ratings = pd.DataFrame(index=pd.RangeIndex(len(experts_frame) + len(llm_frame)))
    for col in RATING_COLUMNS:
        if col == "score":
            ratings[col] = np.concatenate([experts_frame[col].to_numpy(dtype=float),
                                           llm_frame[col].to_numpy(dtype=float)])
        else:
            block = pd.Categorical(experts_frame[col])
            ratings[col] = clean_text(pd.Series(union_categoricals(
                [cat(block.codes, block.categories),
                 cat(llm_frame[col].cat.codes, llm_frame[col].cat.categories)])))

    tasks = pd.DataFrame({"task": list(cfg.tasks),
                          "scale_min": [float(TASKS[t][0]) for t in cfg.tasks],
                          "scale_max": [float(TASKS[t][1]) for t in cfg.tasks]})
    if cfg.continuous:  # wide enough for every unclipped score (latent SDs ≈ 1.5)
        spread = np.array([TASKS[t][3] for t in cfg.tasks])
        tasks["scale_min"] = np.floor(tasks["scale_min"] - 12 * spread)
        tasks["scale_max"] = np.ceil(tasks["scale_max"] + 12 * spread)
    teachers = pd.DataFrame({"teacher_id": np.unique(te_ids), "true_quality": b["teacher_q"],
                             "value_added": value_added(cfg, b, QUALITY_VARIANCES, rng)})
    llms = pd.DataFrame({"rater": llm_names, "family": fams,
                         "benchmark": benchmarks(fx["llm"], cfg.benchmark_signal, rng)})

    expert_sd = _expert_sd(b)
    truth: dict = {"preset": preset if isinstance(preset, str) else "custom", "seed": cfg.seed,
                   "scale": scale, "config": {k: v for k, v in asdict(cfg).items() if k != "llms"},
                   "llms": [list(x) for x in cfg.llms],
                   "generating_error_variances": cfg.error_variances,
                   "expert_sd": dict(zip(cfg.tasks, map(float, expert_sd), strict=True))}
    if compute_truth:
        fam_names = sorted(set(fams))
        llm_family = fx["family_index"] if len(fam_names) > 1 else None
        pop_rng = np.random.default_rng([cfg.seed, 1])
        va_rng = np.random.default_rng([cfg.seed, 2])  # apart, so E1's population stays put
        accs = {s: AnovaAccumulator(nu, ng, (K, L, P, R), fx["family_index"], cfg.n_experts)
                for s in ("expert-sd", "raw")}
        scales = {"expert-sd": expert_sd, "raw": np.ones(K)}
        agree = _agreement(cfg, expert_sd)
        n_pop, chunk = _population(cfg, ng * nu)
        done = 0
        while done < n_pop:
            n = min(chunk, n_pop - done)
            pb = _block(cfg, fx, pop_rng, n)
            for s, acc in accs.items():
                acc.add(_errors(pb, scales[s]), _reference_weights(pb, cfg.n_experts))
            agree.add(pb, nu, ng, value_added(cfg, pb, QUALITY_VARIANCES, va_rng))
            done += n
        truth["error_scales"] = {}
        for s, acc in accs.items():
            var = acc.variances(llm_family is not None)
            truth["error_scales"][s] = {
                "variances": var, **true_shares(var),
                "bias": acc.biases(list(cfg.tasks), [n for n, _ in cfg.llms], list(cfg.prompts)),
                "total_error_sd": float(np.sqrt(sum(var.values())))}
        fam_of = fx["family_index"]
        names = [(m, p) for m, _ in cfg.llms for p in cfg.prompts]
        bench = dict(zip(llms["rater"], llms["benchmark"], strict=True))
        weights = ensemble_weights([m for m, _ in names], [p for _, p in names], bench)
        labels = [f"{m}{SOURCE_SEPARATOR}{p}" for m, p in names]
        ens = {n: w.to_numpy(float) for n, w in weights.iterrows()}
        designs = {kq: w.to_numpy(float) for kq, w in design_weights(
            [m for m, _ in names], [p for _, p in names]).items()}
        truth["measurement"] = agree.result(labels, np.repeat(np.arange(L), P),
                                            np.repeat(fam_of, P), ens, designs)
        truth["measurement_at_design"] = {
            f"{n}x{m}": _design_truth(cfg, fx, expert_sd, n, m, labels, ens)
            for n, m in truth_designs}
        truth["population_teachers"] = n_pop
        truth["definition"] = (
            "finite-population shares on the error scale after rounding (none when continuous): "
            f"the balanced ANOVA of a population of {n_pop} teachers drawn with the same fixed "
            "effects; crossed and reference components as variances over ratings of the "
            "realised effects; biases as the population's mean errors; on the raw scale the "
            "biases are in rubric points (see misalign.data.truth)")
    return SimulatedStudy(ratings=ratings, tasks=tasks, teachers=teachers, llms=llms,
                          truth=truth, config=cfg)
