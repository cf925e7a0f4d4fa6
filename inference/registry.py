"""The one place that knows which analyses exist: the kind written in a results file → its
results class. ``misalign.load`` (and the sensitivity tools, the report and ``misalign summary``)
go through here; no other module branches on a model class or a file's kind
(``tests/test_architecture.py`` enforces it).

Adding an analysis is one line in ``ANALYSES`` (see ARCHITECTURE.md, "How to add an analysis").
"""

from __future__ import annotations

from importlib import import_module
from pathlib import Path

from misalign.models.serialize import ResultsFileError, file_kind, read_datatree

from .analysis import AnalysisResults

# kind → "module:class" of its results class, imported when first needed.
ANALYSES = {
    "e1": "misalign.inference.e1:E1Results",
    "gstudy": "misalign.inference.gstudy:GStudyResults",
    "measurement": "misalign.inference.measurement:MeasurementResults",
}


def results_class(kind: str) -> type[AnalysisResults]:
    if kind not in ANALYSES:
        raise ResultsFileError(f"unknown analysis kind '{kind}' (this version of misalign "
                               f"knows {', '.join(ANALYSES)}): the file was written by another "
                               "version; refit it with this one")
    module, _, name = ANALYSES[kind].partition(":")
    return getattr(import_module(module), name)


def load(path: str | Path) -> AnalysisResults:
    """Read any misalign results file: the rebuilt model with its posterior and the analysis's
    reported quantities (E1 → ``E1Results``, G-study → ``GStudyResults``, …)."""
    tree = read_datatree(path)
    res = results_class(file_kind(tree)).from_datatree(tree, str(path))
    res.path = Path(path)
    return res
