"""misalign: Bayesian measurement of how far LLM judgements drift from expert judgement."""

from importlib import metadata

try:
    __version__ = metadata.version("misalign")
except metadata.PackageNotFoundError:  # running from a source tree without installing
    __version__ = "0.0.0"

from .api import (  # noqa: E402  (version first: serialisation reads it)
    PRESETS,
    E1Results,
    MisalignmentData,
    SimulatedStudy,
    ValidationError,
    VariancePartitionModel,
    build_misalignment,
    fit,
    load_misalignment,
    load_ratings,
    load_results,
    simulate,
)

__all__ = ["PRESETS", "E1Results", "MisalignmentData", "SimulatedStudy", "ValidationError",
           "VariancePartitionModel", "__version__", "build_misalignment", "fit",
           "load_misalignment", "load_ratings", "load_results", "simulate"]
