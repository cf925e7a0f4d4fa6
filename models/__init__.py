"""The E1 variance-partition model: specification, priors, marginal likelihood, PyMC backend."""

from .backend import SAMPLERS
from .gstudy import GStudyModel
from .likelihood import SufficientStats, dense_gaussian_logp, gaussian_marginal_logp
from .priors import PriorError, default_priors, read_priors_toml, resolve_priors
from .spec import LIKELIHOODS, ModelSpec, make_spec
from .variance_partition import EFFECTS, VariancePartitionModel

__all__ = [
    "EFFECTS",
    "GStudyModel",
    "LIKELIHOODS",
    "SAMPLERS",
    "ModelSpec",
    "PriorError",
    "SufficientStats",
    "VariancePartitionModel",
    "default_priors",
    "dense_gaussian_logp",
    "gaussian_marginal_logp",
    "make_spec",
    "read_priors_toml",
    "resolve_priors",
]
