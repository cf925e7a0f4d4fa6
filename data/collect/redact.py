"""Keep secrets out of everything that persists.

Keys come only from the environment. Before any text reaches the store, the log, the console or
an export, the value of every environment variable that holds a secret (the study's
``api_key_env`` variables and any variable named like ``*KEY*``, ``*TOKEN*``, ``*SECRET*``,
``*PASSWORD*``) is replaced, because providers echo keys in error messages.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable

_SECRET_NAME = re.compile(r"KEY|TOKEN|SECRET|PASSWORD|CREDENTIAL", re.I)
MASK = "[redacted]"


class Redactor:
    def __init__(self, extra_env: Iterable[str] = (), environ: dict | None = None) -> None:
        env = os.environ if environ is None else environ
        names = {n for n in env if _SECRET_NAME.search(n)} | set(extra_env)
        values = {env[n] for n in names if n in env and len(env[n]) >= 8}
        # Longest first, so a key that contains another is removed whole.
        self.secrets = sorted(values, key=len, reverse=True)

    def __call__(self, text: str | None) -> str | None:
        if not text or not self.secrets:
            return text
        for s in self.secrets:
            if s in text:
                text = text.replace(s, MASK)
        return text


class RedactingFilter(logging.Filter):
    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self.redact = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = self.redact(record.getMessage())
        record.args = ()
        return True
