"""From posterior draws to reported quantities: shares, the diagnostics gate, results files."""

from .diagnostics import ESS_MIN, RHAT_MAX, GateResult, diagnostics_gate
from .results import E1Results, fit_e1, load_results
from .shares import HDI_PROB, compute_shares, share_table

__all__ = [
    "ESS_MIN",
    "HDI_PROB",
    "RHAT_MAX",
    "E1Results",
    "GateResult",
    "compute_shares",
    "diagnostics_gate",
    "fit_e1",
    "load_results",
    "share_table",
]
