"""The models: the frame every model shares (``BayesianModel``), E1 and the G-study, their
priors, marginal likelihoods and the PyMC backends.

Names load on first use (PEP 562), so that ``misalign.models.options`` (what the CLI needs
before anything heavy) can be imported without PyMC.
"""

from importlib import import_module

_HOME = {
    "DEFAULTS": "options", "LIKELIHOODS": "options", "SAMPLERS": "options",
    "SamplerConfig": "options", "BayesianModel": "base", "GStudyModel": "gstudy",
    "SufficientStats": "likelihood", "dense_gaussian_logp": "likelihood",
    "gaussian_marginal_logp": "likelihood", "PriorError": "priors",
    "default_priors": "priors", "read_priors_toml": "priors", "resolve_priors": "priors",
    "ResultsFileError": "serialize", "ModelSpec": "spec", "make_spec": "spec",
    "EFFECTS": "spec", "VariancePartitionModel": "variance_partition",
}
__all__ = sorted(_HOME)


def __getattr__(name: str):
    if name in _HOME:
        return getattr(import_module(f"{__name__}.{_HOME[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
