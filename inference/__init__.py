"""From posterior draws to reported quantities: the analysis frame (``AnalysisResults``, the
registry), E1, the G-study and the joint measurement model on it, the diagnostics gate, and the
sensitivity tools."""

from .analysis import AnalysisResults
from .diagnostics import ESS_MIN, RHAT_MAX, GateResult, diagnostics_gate
from .e1 import E1Results, fit_e1, load_results
from .gstudy import GStudyResults, fit_gstudy, load_gstudy
from .measurement import MeasurementResults, fit_measurement
from .registry import ANALYSES, load
from .reliability import decision_study, disattenuate, noise_ceiling, reliability
from .sections import FigureSpec, Section, TableSpec
from .shares import compute_shares, share_table
from .summaries import HDI_PROB, hdi, interval_frame

__all__ = [
    "ANALYSES",
    "ESS_MIN",
    "HDI_PROB",
    "RHAT_MAX",
    "AnalysisResults",
    "E1Results",
    "FigureSpec",
    "GStudyResults",
    "GateResult",
    "MeasurementResults",
    "Section",
    "TableSpec",
    "compute_shares",
    "decision_study",
    "diagnostics_gate",
    "disattenuate",
    "fit_e1",
    "fit_gstudy",
    "fit_measurement",
    "hdi",
    "interval_frame",
    "load",
    "load_gstudy",
    "load_results",
    "noise_ceiling",
    "reliability",
    "share_table",
]
