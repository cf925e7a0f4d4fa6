import os
import warnings
from pathlib import Path

import pytest

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

REPO = Path(__file__).resolve().parents[1]
NCTE = REPO.parent / "shared" / "data" / "ncte_class" / "class_ratings.csv"


@pytest.fixture(scope="session")
def small_study():
    from misalign.data.simulate import simulate

    return simulate("small")


@pytest.fixture(scope="session")
def small_fit(small_study):
    """One real fit of the small preset, shared by the recovery, results and predictive tests."""
    from misalign.data import build_misalignment
    from misalign.inference import fit_e1

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        data = build_misalignment(small_study.table())
        return fit_e1(data, draws=1000, tune=1000, chains=4, seed=11, progressbar=False)
