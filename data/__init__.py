"""Ratings format, validation, the misalignment table and the study simulator."""

from .experts import ExpertRatings, load_experts, read_expert_long, read_ncte_class
from .io import RatingsTable, load_ratings, read_tasks, validate_ratings
from .misalignment import ERROR_SCALES, MisalignmentData, build_misalignment
from .schema import REFERENCE_TASKS, Problem, ValidationError

__all__ = [
    "ERROR_SCALES",
    "ExpertRatings",
    "REFERENCE_TASKS",
    "MisalignmentData",
    "Problem",
    "RatingsTable",
    "ValidationError",
    "build_misalignment",
    "load_experts",
    "load_ratings",
    "read_expert_long",
    "read_ncte_class",
    "read_tasks",
    "validate_ratings",
]
