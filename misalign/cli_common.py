"""What every command shares: the consoles, exit codes and plain error messages."""

from __future__ import annotations

import sys

import typer
from rich.console import Console

err = Console(stderr=True, soft_wrap=True)  # never break a path or message mid-line
out = Console()

EXIT_INPUT = 2  # bad input: validation, priors, options
EXIT_GATE = 3  # --strict and the diagnostics gate failed
EXIT_INCOMPLETE = 4  # a collection ended with failed or pending requests (rerun to retry)


def fail(message: str, code: int = EXIT_INPUT) -> typer.Exit:
    # Plain text, never wrapped: each problem stays on one line that tools can grep.
    sys.stderr.write(message.rstrip("\n") + "\n")
    return typer.Exit(code)


def problems(exc) -> typer.Exit:
    lines = [str(p) for p in exc.problems]
    shown = lines[:50]
    more = f"\n  … and {len(lines) - 50} more" if len(lines) > 50 else ""
    head = f"error: {len(lines)} problem{'s' if len(lines) != 1 else ''} in the input:"
    return fail("\n".join([head, *(f"  - {s}" for s in shown)]) + more)
