"""The long ratings format and the error type every loader raises."""

from __future__ import annotations

from dataclasses import dataclass, field

REQUIRED_RATING_COLUMNS = ("unit_id", "task", "rater", "rater_kind", "prompt", "score")
OPTIONAL_RATING_COLUMNS = ("replicate", "transcript_id", "teacher_id", "family")
RATING_COLUMNS = REQUIRED_RATING_COLUMNS + OPTIONAL_RATING_COLUMNS
TASK_COLUMNS = ("task", "scale_min", "scale_max")
RATER_KINDS = ("expert", "llm")
# One rating is identified by these; a second row with the same key is a duplicate.
RATING_KEY = ("unit_id", "task", "rater", "prompt", "replicate")
SCORE_POLICIES = ("error", "drop")

# The reference study's seven rubric items (STUDY.md).
REFERENCE_TASKS = {
    "CLPC": (1, 7),
    "CLBM": (1, 7),
    "CLINSTD": (1, 7),
    "EXPL": (1, 3),
    "REMED": (1, 3),
    "LANGIMP": (1, 3),
    "SMQR": (1, 3),
}


@dataclass(frozen=True)
class Problem:
    """One thing wrong with an input file, located as precisely as it can be."""

    file: str
    message: str
    row: int | None = None  # 1-based data row
    column: str | None = None
    line: int | None = None  # text files only: the line in the file (the header is line 1)

    def __str__(self) -> str:
        where = [self.file]
        if self.row is not None:
            where.append(f"row {self.row}" + (f" (line {self.line})" if self.line else ""))
        elif self.line is not None:
            where.append(f"line {self.line}")
        if self.column is not None:
            where.append(f"column '{self.column}'")
        return ", ".join(where) + ": " + self.message


@dataclass
class ValidationError(Exception):
    """Raised with every problem found in one pass, so users fix them all at once."""

    problems: list[Problem] = field(default_factory=list)

    def __str__(self) -> str:
        n = len(self.problems)
        head = f"{n} problem{'s' if n != 1 else ''} in the input:"
        return "\n".join([head, *(f"  - {p}" for p in self.problems)])
