"""Ratings format, validation, the misalignment table and the study simulator."""

from .io import RatingsTable, load_ratings, read_tasks, validate_ratings
from .misalignment import ERROR_SCALES, MisalignmentData, build_misalignment
from .schema import REFERENCE_TASKS, Problem, ValidationError

__all__ = [
    "ERROR_SCALES",
    "REFERENCE_TASKS",
    "MisalignmentData",
    "Problem",
    "RatingsTable",
    "ValidationError",
    "build_misalignment",
    "load_ratings",
    "read_tasks",
    "validate_ratings",
]
