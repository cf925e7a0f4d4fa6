import pytest
from pymc_extras.prior import Prior

from misalign.models import PriorError, read_priors_toml, resolve_priors
from misalign.models.priors import default_priors


def test_defaults_scale_with_the_data():
    p = default_priors(2.0, ["llm", "residual"], student=False)
    assert p["sigma_llm"] == Prior("HalfNormal", sigma=2.0)
    assert p["intercept"] == Prior("Normal", mu=0.0, sigma=5.0)
    assert "nu_minus_2" in default_priors(1.0, ["residual"], student=True)


def test_override_from_toml(tmp_path):
    f = tmp_path / "priors.toml"
    f.write_text('[sigma_llm]\ndistribution = "Exponential"\nlam = 4.0\n')
    p = resolve_priors(default_priors(1.0, ["llm"], False), read_priors_toml(f))
    assert p["sigma_llm"] == Prior("Exponential", lam=4.0)


def test_unknown_name_suggests_the_closest(tmp_path):
    with pytest.raises(PriorError, match="unknown prior 'sigma_lm'; did you mean 'sigma_llm'"):
        resolve_priors(default_priors(1.0, ["llm"], False), {"sigma_lm": Prior("HalfNormal")})


def test_bad_parameters_name_the_prior():
    with pytest.raises(PriorError, match="prior 'sigma_llm'"):
        resolve_priors(default_priors(1.0, ["llm"], False),
                       {"sigma_llm": {"distribution": "HalfNormal", "sgma": 1}})
