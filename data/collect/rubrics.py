"""Rubric files (one TOML per task) and the retrieval knowledge bundled beside them.

A task in a study file is either a bundled rubric's name (``CLPC``) or the path of a user's own
rubric TOML with the same fields: ``task``, ``title``, ``version``, ``scale_min``, ``scale_max``,
``description`` and one ``[[level]]`` (``score``, ``text``) per score. A user rubric may point at
its own knowledge file with ``knowledge = "file.toml"`` (``[[passage]] text``, ``[[exemplar]]
score, text, rationale``); without one, the rag strategy retrieves from the rubric's levels only.
"""

from __future__ import annotations

import hashlib
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from ..schema import Problem, ValidationError

RUBRIC_FIELDS = {"task", "instrument", "title", "version", "scale_min", "scale_max",
                 "description", "level", "knowledge"}


@dataclass(frozen=True)
class Exemplar:
    text: str
    score: int
    rationale: str = ""


@dataclass(frozen=True)
class Knowledge:
    version: int = 0
    passages: tuple[str, ...] = ()
    exemplars: tuple[Exemplar, ...] = ()


@dataclass(frozen=True)
class Rubric:
    task: str
    title: str
    version: int
    scale_min: int
    scale_max: int
    description: str
    levels: dict[int, str]
    instrument: str = ""
    source: str = ""
    knowledge: Knowledge = field(default_factory=Knowledge)

    @property
    def digest(self) -> str:
        """Short hash of everything a prompt is built from, so an edit without a version bump
        still changes the rating key."""
        h = hashlib.sha256(repr((self.task, self.title, self.scale_min, self.scale_max,
                                 self.description, sorted(self.levels.items()),
                                 self.knowledge)).encode())
        return h.hexdigest()[:8]


def bundled_tasks() -> list[str]:
    folder = resources.files(__package__) / "rubrics"
    return sorted(p.name.removesuffix(".toml") for p in folder.iterdir()
                  if p.name.endswith(".toml"))


def _read_toml(path: Path | resources.abc.Traversable, label: str) -> dict:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ValidationError([Problem(file=label, message=f"not valid TOML: {exc}")]) from None
    except OSError as exc:
        raise ValidationError([Problem(file=label, message=f"cannot read: {exc}")]) from None


def _knowledge(raw: dict, label: str) -> Knowledge:
    problems = []
    passages = []
    for i, p in enumerate(raw.get("passage", []), 1):
        if not isinstance(p, dict) or not str(p.get("text", "")).strip():
            problems.append(Problem(file=label, message=f"passage {i} has no text"))
        else:
            passages.append(str(p["text"]).strip())
    exemplars = []
    for i, e in enumerate(raw.get("exemplar", []), 1):
        if not isinstance(e, dict) or not str(e.get("text", "")).strip() or not isinstance(
                e.get("score"), int):
            problems.append(Problem(file=label, message=f"exemplar {i} needs text and an "
                                    "integer score"))
        else:
            exemplars.append(Exemplar(str(e["text"]).strip(), int(e["score"]),
                                      str(e.get("rationale", "")).strip()))
    if problems:
        raise ValidationError(problems)
    return Knowledge(int(raw.get("version", 0)), tuple(passages), tuple(exemplars))


def parse_rubric(raw: dict, label: str, knowledge: Knowledge | None = None) -> Rubric:
    problems = []
    for key in sorted(set(raw) - RUBRIC_FIELDS):
        problems.append(Problem(file=label, message=f"unknown field '{key}' (known: "
                                f"{', '.join(sorted(RUBRIC_FIELDS))})"))
    for key in ("task", "title", "version", "scale_min", "scale_max", "description", "level"):
        if key not in raw:
            problems.append(Problem(file=label, message=f"missing field '{key}'"))
    if problems:
        raise ValidationError(problems)
    lo, hi = raw["scale_min"], raw["scale_max"]
    if not (isinstance(lo, int) and isinstance(hi, int) and lo < hi):
        raise ValidationError([Problem(file=label, message="scale_min and scale_max must be "
                                       f"integers with scale_min < scale_max (got {lo}, {hi})")])
    levels: dict[int, str] = {}
    for i, lev in enumerate(raw["level"], 1):
        s = lev.get("score") if isinstance(lev, dict) else None
        if not isinstance(s, int) or not lo <= s <= hi or not str(lev.get("text", "")).strip():
            problems.append(Problem(file=label, message=f"level {i} needs an integer score in "
                                    f"{lo}–{hi} and a text"))
        elif s in levels:
            problems.append(Problem(file=label, message=f"level {i}: score {s} described twice"))
        else:
            levels[s] = str(lev["text"]).strip()
    missing = [s for s in range(lo, hi + 1) if s not in levels]
    if missing and not problems:
        problems.append(Problem(file=label, message="no level text for score(s) "
                                + ", ".join(map(str, missing))))
    if problems:
        raise ValidationError(problems)
    return Rubric(task=str(raw["task"]), title=str(raw["title"]), version=int(raw["version"]),
                  scale_min=lo, scale_max=hi, description=str(raw["description"]).strip(),
                  levels=dict(sorted(levels.items())), instrument=str(raw.get("instrument", "")),
                  source=label, knowledge=knowledge or Knowledge())


def load_rubric(name_or_path: str, base: Path | None = None) -> Rubric:
    """A bundled rubric by task name, or a user's rubric file (relative to ``base``)."""
    if name_or_path in bundled_tasks():
        pkg = resources.files(__package__)
        raw = _read_toml(pkg / "rubrics" / f"{name_or_path}.toml", f"rubric {name_or_path}")
        kb_file = pkg / "knowledge" / f"{name_or_path}.toml"
        kb = _knowledge(_read_toml(kb_file, f"knowledge {name_or_path}"), str(kb_file)) \
            if kb_file.is_file() else None
        return parse_rubric(raw, f"rubric {name_or_path} (bundled)", kb)
    path = Path(name_or_path)
    if base is not None and not path.is_absolute():
        path = base / path
    if not path.is_file():
        raise ValidationError([Problem(file=str(path), message=(
            f"'{name_or_path}' is neither a bundled task ({', '.join(bundled_tasks())}) "
            "nor a rubric file"))])
    raw = _read_toml(path, str(path))
    kb = None
    if "knowledge" in raw:
        kb_path = path.parent / str(raw["knowledge"])
        kb = _knowledge(_read_toml(kb_path, str(kb_path)), str(kb_path))
    return parse_rubric(raw, str(path), kb)
