"""``misalign dstudy``: how many LLMs and prompts to average (E5), from an E1 results file, with
the floor split and the expected correlations when a joint-model results file is given."""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path
from typing import Annotated

import typer

from misalign.cli_common import JsonOpt, err, fail, load_or_fail, missing_file, out


def dstudy(
    e1: Annotated[Path, typer.Argument(help="A `misalign fit` (E1) results file.")],
    measure: Annotated[Path | None, typer.Option(help=(
        "A `misalign measure` results file of the same data: splits the floor into the "
        "experts' own error and what all LLMs share, and adds the expected correlation of "
        "each average with true quality and value-added."))] = None,
    as_json: JsonOpt = False,
) -> None:
    """The error of an average over k LLMs × q prompts, the floor no number of LLMs removes,
    and the smallest design within 5% of it (superpopulation and finite population)."""
    missing_file(e1, measure)
    from misalign.inference.e1_sections import decision_section
    from misalign.reports.tables import to_rich

    res = load_or_fail(e1)
    if not hasattr(res, "decision_table"):
        raise fail(f"error: {e1} is a {res.kind} results file; dstudy needs an E1 one "
                   "(`misalign fit`)")
    sections = [decision_section(res)]
    if measure is not None:
        from misalign.inference.dstudy_joint import joint_sections

        meas = load_or_fail(measure)
        if not hasattr(meas, "net"):
            raise fail(f"error: {measure} is a {meas.kind} results file; --measure needs one "
                       "from `misalign measure`")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            sections += joint_sections(meas)
    if as_json:
        payload = {t.key: t.frame.to_dict(orient="records") for s in sections for t in s.tables}
        payload["smallest_within_5pct_of_floor"] = res.decision_table.attrs["smallest"]
        sys.stdout.write(json.dumps(payload, indent=2, default=str) + "\n")
        return
    for section in sections:
        for line in section.text:
            out.print(line, markup=False, highlight=False)
        for table in section.tables:
            out.print(to_rich(table))
    err.print(f"decision study of {e1}" + (f" with {measure}" if measure else ""),
              markup=False)


def register(app: typer.Typer) -> None:
    app.command()(dstudy)
