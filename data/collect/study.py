"""The study file (TOML): tasks, LLMs, strategies, replicates, cost cap and runner settings.

```toml
name = "pilot"
units = "segments.csv"            # optional; `misalign collect --units` overrides
tasks = ["CLPC", "EXPL", "rubrics/my_item.toml"]
strategies = ["base", "cot", "rag"]
replicates = 2
cost_cap_usd = 25.0
mode = "live"                      # live | batch | auto (batch where the provider has one)

[run]                              # all optional
concurrency = 64
timeout_s = 60
max_attempts = 6                   # per request per run, for 429 / 5xx / timeouts
backoff_base_s = 1.0
backoff_max_s = 60.0
batch_max_requests = 50000         # lines per provider batch
batch_poll_s = 10.0                # first wait between polls of a batch (grows ×1.5)
batch_poll_max_s = 300.0

[rag]
k_passages = 3
k_exemplars = 2

[[llm]]
name = "gpt-4o-mini"               # the rater label in the ratings (default: model)
model = "openai/gpt-4o-mini"       # a litellm model string
family = "openai"
api_base = "https://..."           # optional
api_key_env = "MY_OPENAI_KEY"      # optional: the environment variable holding the key
rpm = 500                          # optional per-model limits
tpm = 200000
temperature = 0.0
max_tokens = 512
input_cost_per_token = 1.5e-7      # optional: overrides litellm's cost map
output_cost_per_token = 6e-7
batch_input_cost_per_token = 7.5e-8   # optional: the batch price (default: litellm's)
batch_output_cost_per_token = 3e-7
mode = "batch"                     # optional: this LLM's mode (default: the study's)
```

Keys never go in this file: a field named like a key is an error that says where keys go.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
import tomllib
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..schema import Problem, ValidationError
from .prompts import STRATEGIES, RagConfig
from .rubrics import Rubric, load_rubric


@dataclass(frozen=True)
class LLMConfig:
    name: str
    model: str
    family: str = ""
    api_base: str | None = None
    api_key_env: str | None = None
    rpm: float | None = None
    tpm: float | None = None
    temperature: float = 0.0
    max_tokens: int = 512
    input_cost_per_token: float | None = None
    output_cost_per_token: float | None = None
    batch_input_cost_per_token: float | None = None
    batch_output_cost_per_token: float | None = None
    mode: str = ""  # live, batch, auto; "" = the study's


@dataclass
class RunConfig:
    concurrency: int = 16
    timeout_s: float = 60.0
    max_attempts: int = 6
    backoff_base_s: float = 1.0
    backoff_max_s: float = 60.0
    batch_max_requests: int = 50_000
    batch_poll_s: float = 10.0
    batch_poll_max_s: float = 300.0


MODES = ("live", "batch", "auto")


@dataclass
class Study:
    name: str
    tasks: list[Rubric]
    llms: list[LLMConfig]
    strategies: list[str]
    replicates: int = 1
    cost_cap_usd: float | None = None
    units: Path | None = None
    run: RunConfig = field(default_factory=RunConfig)
    rag: RagConfig = field(default_factory=RagConfig)
    source: str = ""
    mode: str = "live"

    def describe(self) -> dict:
        """What defines the study, for the store's metadata (no secrets: key variable names
        only)."""
        return {"name": self.name, "strategies": self.strategies, "replicates": self.replicates,
                "tasks": {r.task: {"version": r.version, "digest": r.digest,
                                   "scale": [r.scale_min, r.scale_max]} for r in self.tasks},
                "llms": [asdict(m) for m in self.llms], "rag": asdict(self.rag)}

    @property
    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.describe(), sort_keys=True).encode()).hexdigest()


TOP = {"name", "units", "tasks", "strategies", "replicates", "cost_cap_usd", "run", "rag", "llm",
       "mode"}
LLM_FIELDS = set(LLMConfig.__dataclass_fields__)
RUN_FIELDS = set(RunConfig.__dataclass_fields__)
RAG_FIELDS = set(RagConfig.__dataclass_fields__)
_SECRET_NAMES = ("api_key", "key", "apikey", "token", "secret", "password")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _unknown(keys: set[str], known: set[str], where: str, label: str) -> list[Problem]:
    out = []
    for k in sorted(keys - known):
        if k.lower() in _SECRET_NAMES or k.lower().endswith(("_key", "_token", "_secret")) and \
                k != "api_key_env":
            out.append(Problem(file=label, message=(
                f"{where}: '{k}' looks like a secret; keys never go in the study file. Set the "
                "provider's environment variable (e.g. OPENAI_API_KEY), or name your own with "
                "api_key_env = \"VARIABLE\"")))
            continue
        near = difflib.get_close_matches(k, sorted(known), n=1)
        hint = f" (did you mean '{near[0]}'?)" if near else ""
        out.append(Problem(file=label, message=f"{where}: unknown field '{k}'{hint}"))
    return out


def _typed(cls, raw: dict, where: str, label: str, problems: list[Problem]):
    values = {}
    for name, f in cls.__dataclass_fields__.items():
        if name not in raw:
            continue
        v = raw[name]
        want = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
        ok = True
        if "float" in want and "str" not in want:
            ok = isinstance(v, int | float) and not isinstance(v, bool) and v >= 0
        elif "int" in want:
            ok = isinstance(v, int) and not isinstance(v, bool) and v >= 0
        elif "str" in want:
            ok = isinstance(v, str)
        if not ok:
            problems.append(Problem(file=label, message=f"{where}: '{name}' must be {want} "
                                    f"(got {v!r})"))
        else:
            values[name] = v
    return values


def read_study(path: str | Path) -> Study:
    """Read and check a study file; every problem is reported at once."""
    path = Path(path)
    label = str(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValidationError([Problem(file=label, message="study file not found")]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ValidationError([Problem(file=label, message=f"not valid TOML: {exc}")]) from None
    problems = _unknown(set(raw), TOP, "top level", label)
    base = path.parent

    tasks: list[Rubric] = []
    task_names = raw.get("tasks", [])
    if not task_names or not isinstance(task_names, list):
        problems.append(Problem(file=label, message="'tasks' must list at least one task"))
    for t in task_names if isinstance(task_names, list) else []:
        try:
            tasks.append(load_rubric(str(t), base))
        except ValidationError as exc:
            problems.extend(Problem(file=label, message=f"tasks: {p}") for p in exc.problems)
    seen = [r.task for r in tasks]
    for t in sorted({t for t in seen if seen.count(t) > 1}):
        problems.append(Problem(file=label, message=f"task '{t}' is listed twice"))

    strategies = raw.get("strategies", ["base"])
    if not isinstance(strategies, list) or not strategies:
        problems.append(Problem(file=label, message="'strategies' must be a non-empty list"))
        strategies = []
    for s in strategies:
        if s not in STRATEGIES:
            problems.append(Problem(file=label, message=f"unknown strategy '{s}' (known: "
                                    f"{', '.join(STRATEGIES)})"))

    llms: list[LLMConfig] = []
    entries = raw.get("llm", [])
    if not entries:
        problems.append(Problem(file=label, message="no [[llm]] entries"))
    family_typo: set[int] = set()  # entries with a misspelt 'family': reported as the typo
    typo_names: set[str] = set()
    for i, e in enumerate(entries, 1):
        where = f"[[llm]] {i}"
        problems.extend(_unknown(set(e), LLM_FIELDS, where, label))
        if any(difflib.get_close_matches(k, ["family"]) for k in set(e) - LLM_FIELDS):
            family_typo.add(i)
        if not isinstance(e.get("model"), str) or not e["model"].strip():
            problems.append(Problem(file=label, message=f"{where}: 'model' (a litellm model "
                                    "string such as 'openai/gpt-4o-mini') is required"))
            continue
        vals = _typed(LLMConfig, e, where, label, problems)
        env = vals.get("api_key_env")
        if env is not None and not _ENV_NAME.fullmatch(env):
            # Never echo it: a pasted key is the usual reason.
            problems.append(Problem(file=label, message=(
                f"{where}: 'api_key_env' must be the name of an environment variable (letters, "
                "digits and _, e.g. \"MY_OPENAI_KEY\"), not the key itself; set that variable "
                "to the key. The value given is not shown or stored.")))
            vals.pop("api_key_env")
        if vals.get("mode", "") not in ("", *MODES):
            problems.append(Problem(file=label, message=f"{where}: 'mode' must be one of "
                                    f"{', '.join(MODES)} (got {vals['mode']!r})"))
            vals.pop("mode")
        vals.setdefault("name", e["model"])
        llms.append(LLMConfig(**vals))
        if i in family_typo:
            typo_names.add(vals["name"])
    names = [m.name for m in llms]
    for n in sorted({n for n in names if names.count(n) > 1}):
        problems.append(Problem(file=label, message=f"two [[llm]] entries are named '{n}': give "
                                "each a distinct name"))

    with_family = [m.name for m in llms if m.family]
    # A misspelt 'famly' is reported above; do not also call its LLM familyless.
    without = [m.name for m in llms if not m.family and m.name not in typo_names]
    if with_family and without:
        problems.append(Problem(file=label, message=(
            "give every [[llm]] a family or none (families group LLMs in the model; these have "
            "none: " + ", ".join(without) + ")")))

    run_raw = raw.get("run", {})
    rag_raw = raw.get("rag", {})
    problems.extend(_unknown(set(run_raw), RUN_FIELDS, "[run]", label))
    problems.extend(_unknown(set(rag_raw), RAG_FIELDS, "[rag]", label))
    run = RunConfig(**_typed(RunConfig, run_raw, "[run]", label, problems))
    rag = RagConfig(**_typed(RagConfig, rag_raw, "[rag]", label, problems))
    if run.concurrency < 1 or run.max_attempts < 1:
        problems.append(Problem(file=label, message="[run]: concurrency and max_attempts must "
                                "be at least 1"))
    if run.batch_max_requests < 1 or run.batch_poll_s <= 0 or \
            run.batch_poll_max_s < run.batch_poll_s:
        problems.append(Problem(file=label, message="[run]: batch_max_requests must be at "
                                "least 1, batch_poll_s above 0 and batch_poll_max_s at least "
                                "batch_poll_s"))
    mode = raw.get("mode", "live")
    if mode not in MODES:
        problems.append(Problem(file=label, message=f"'mode' must be one of {', '.join(MODES)} "
                                f"(got {mode!r})"))
    replicates = raw.get("replicates", 1)
    if not isinstance(replicates, int) or isinstance(replicates, bool) or replicates < 1:
        problems.append(Problem(file=label, message=f"'replicates' must be an integer ≥ 1 (got "
                                f"{replicates!r})"))
    cap = raw.get("cost_cap_usd")
    if cap is not None and (not isinstance(cap, int | float) or cap < 0):
        problems.append(Problem(file=label, message=f"'cost_cap_usd' must be ≥ 0 (got {cap!r})"))
    if problems:
        raise ValidationError(problems)
    units = raw.get("units")
    return Study(name=str(raw.get("name", path.stem)), tasks=tasks, llms=llms,
                 strategies=list(dict.fromkeys(strategies)), replicates=replicates,
                 cost_cap_usd=float(cap) if cap is not None else None,
                 units=(base / units) if units else None, run=run, rag=rag, source=label,
                 mode=mode)
