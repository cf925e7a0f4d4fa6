"""Collecting LLM ratings: study files, rubrics and prompts, the SQLite store, the runner,
parsing, export to the long ratings format, and a local OpenAI-compatible test server."""

from .export import Export, export_ratings
from .parse import Parsed, parse_answer
from .plan import DryRun, dry_run, iter_plan, plan_size
from .prompts import STRATEGIES, PromptBuilder, template_version
from .redact import RedactingFilter, Redactor
from .rubrics import Rubric, bundled_tasks, load_rubric
from .runner import CollectError, Collector, RunSummary, collect
from .store import Attempt, Store, StoreError, rating_key
from .study import LLMConfig, RunConfig, Study, read_study
from .units import Units, read_units

__all__ = [
    "STRATEGIES", "Attempt", "CollectError", "Collector", "DryRun", "Export", "LLMConfig",
    "Parsed", "PromptBuilder", "RedactingFilter", "Redactor", "Rubric", "RunConfig",
    "RunSummary", "Store", "StoreError", "Study", "Units", "bundled_tasks", "collect",
    "dry_run", "export_ratings", "iter_plan", "load_rubric", "parse_answer", "plan_size",
    "rating_key", "read_study", "read_units", "template_version",
]
