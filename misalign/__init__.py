"""misalign: Bayesian measurement of how far LLM judgements drift from expert judgement."""

from importlib import import_module, metadata

try:
    __version__ = metadata.version("misalign")
except metadata.PackageNotFoundError:  # running from a source tree without installing
    __version__ = "0.0.0"

__all__ = ["PRESETS", "AnalysisResults", "E1Results", "GStudyResults", "MeasurementData",
           "MeasurementResults", "MisalignmentData", "SamplerConfig", "SimulatedStudy",
           "ValidationError", "VariancePartitionModel", "__version__", "build_measurement",
           "build_misalignment", "collect", "export_ratings", "fit", "fit_gstudy",
           "fit_measurement", "load", "load_experts", "load_gstudy", "load_misalignment",
           "load_ratings", "load_results", "measurement_data", "misalignment_data",
           "noise_ceiling", "read_study", "read_units", "simulate"]
_COLLECT = {"collect", "export_ratings", "read_study", "read_units"}
_HOME = {"noise_ceiling": "misalign.inference"}


def __getattr__(name: str):
    # Lazy: `misalign collect` and the test server must not pay for importing PyMC.
    if name in _COLLECT:
        return getattr(import_module("misalign.data.collect"), name)
    if name in _HOME:
        return getattr(import_module(_HOME[name]), name)
    if name in __all__:
        return getattr(import_module("misalign.api"), name)
    raise AttributeError(f"module 'misalign' has no attribute '{name}'")
