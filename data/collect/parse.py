"""The one accepted answer format: a final line ``Score: N``.

The parser sees only the model's answer and the task's scale, never the transcript, so nothing a
transcript says can change what is accepted. It never guesses: a missing score line, a score
line that is not the last line, a non-integer, a number outside the scale, or two different
scores anywhere in the answer are each a recorded parse failure. Markdown emphasis around the
line (``**Score: 4**``) and a trailing period are tolerated; nothing else is.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_LINE = re.compile(r"^[\s*_`>#-]*score[\s*_`]*[:=][\s*_`]*([^\s*_`]*)[\s*_`.]*$", re.I)
_ANY = re.compile(r"score[\s*_`]*[:=][\s*_`]*([+-]?\d+(?:\.\d+)?)", re.I)
_INT = re.compile(r"^[+-]?\d+$")


@dataclass(frozen=True)
class Parsed:
    score: int | None
    status: str  # "ok" or the failure: no_score, not_final, not_integer, out_of_scale, conflict
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def parse_answer(text: str | None, scale_min: int, scale_max: int) -> Parsed:
    lines = [ln for ln in (text or "").splitlines() if ln.strip()]
    if not lines:
        return Parsed(None, "no_score", "empty answer")
    final = _LINE.match(lines[-1])
    if final is None:
        if any(_LINE.match(ln) for ln in lines) or _ANY.search(text or ""):
            return Parsed(None, "not_final", "a score appears, but the last line is not "
                          "'Score: N'")
        return Parsed(None, "no_score", "no 'Score: N' line")
    value = final.group(1).rstrip(".")
    if not _INT.match(value):
        return Parsed(None, "not_integer", f"'{value}' is not an integer")
    score = int(value)
    others = {float(m.group(1)) for m in _ANY.finditer(text or "")}
    if others - {float(score)}:
        shown = ", ".join(f"{v:g}" for v in sorted(others))
        return Parsed(None, "conflict", f"more than one score in the answer ({shown})")
    if not scale_min <= score <= scale_max:
        return Parsed(None, "out_of_scale", f"{score} is outside {scale_min}–{scale_max}")
    return Parsed(score, "ok")
