"""From posterior draws to reported quantities: shares, the diagnostics gate, results files."""

from .diagnostics import ESS_MIN, RHAT_MAX, GateResult, diagnostics_gate
from .gstudy import GStudyResults, fit_gstudy, load_gstudy
from .reliability import decision_study, disattenuate, noise_ceiling, reliability
from .results import E1Results, fit_e1, load_results
from .shares import HDI_PROB, compute_shares, share_table

__all__ = [
    "ESS_MIN",
    "HDI_PROB",
    "RHAT_MAX",
    "E1Results",
    "GStudyResults",
    "GateResult",
    "compute_shares",
    "decision_study",
    "disattenuate",
    "fit_gstudy",
    "load_gstudy",
    "noise_ceiling",
    "reliability",
    "diagnostics_gate",
    "fit_e1",
    "load_results",
    "share_table",
]
