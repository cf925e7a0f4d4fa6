import pytest
from pymc_extras.prior import Prior

from misalign.models import PriorError, read_priors_toml, resolve_priors
from misalign.models.e1_priors import default_priors


def test_defaults_scale_with_the_data():
    p = default_priors(2.0, ["llm", "residual"], student=False, structure="independent")
    assert p["sigma_llm"] == Prior("HalfNormal", sigma=2.0)
    assert p["intercept"] == Prior("Normal", mu=0.0, sigma=5.0)
    assert "nu_minus_2" in default_priors(1.0, ["residual"], student=True)
    b = default_priors(2.0, ["llm", "prompt", "unit:task", "residual"], student=False,
                       n_tasks=3)
    assert b["sigma_total"] == Prior("HalfNormal", sigma=3.0)
    assert list(b["aggregate_shares"].parameters["a"]) == [1.0, 1.0, 1.0]
    assert list(b["shares_attributable"].parameters["a"]) == [1.0, 1.0]
    assert "sigma_llm" not in b and "tau_residual" in b


def test_override_from_toml(tmp_path):
    f = tmp_path / "priors.toml"
    f.write_text('[sigma_llm]\ndistribution = "Exponential"\nlam = 4.0\n')
    p = resolve_priors(default_priors(1.0, ["llm"], False, "independent"), read_priors_toml(f))
    assert p["sigma_llm"] == Prior("Exponential", lam=4.0)


def test_unknown_name_suggests_the_closest(tmp_path):
    with pytest.raises(PriorError, match="unknown prior 'sigma_lm'; did you mean 'sigma_llm'"):
        resolve_priors(default_priors(1.0, ["llm"], False, "independent"),
                       {"sigma_lm": Prior("HalfNormal")})


def test_bad_parameters_name_the_prior():
    with pytest.raises(PriorError, match="prior 'sigma_llm'"):
        resolve_priors(default_priors(1.0, ["llm"], False, "independent"),
                       {"sigma_llm": {"distribution": "HalfNormal", "sgma": 1}})


def test_budget_density_of_the_variances_is_the_generative_budget():
    """The sampler's log-variance form of the budget prior equals the generative statement
    (σ_total, aggregate shares, shares inside aggregates) by the change of variables, checked
    with a numerical Jacobian."""
    import numpy as np
    import pymc as pm

    from misalign.models.e1_priors import budget_aggregates, budget_logp

    comps = ["llm", "family", "prompt", "task", "llm:prompt", "unit:task", "unit", "lineage",
             "reference", "residual"]
    priors = default_priors(0.9, comps, student=False, structure="budget")
    aggs = budget_aggregates(comps)
    assert list(aggs) == ["attributable", "shared", "lineage", "reference", "task", "residual"]

    def logp(name, value):
        p = priors[name]
        return float(pm.logp(getattr(pm, p.distribution).dist(**p.parameters), value).eval())

    def unpack(x):
        """free coordinates → (σ_total, ψ, {aggregate: ξ}) with the last share implied."""
        sigma, i = x[0], 1
        psi = np.append(x[i:i + len(aggs) - 1], 1 - x[i:i + len(aggs) - 1].sum())
        i += len(aggs) - 1
        xi = {}
        for a, m in aggs.items():
            if len(m) > 1:
                xi[a] = np.append(x[i:i + len(m) - 1], 1 - x[i:i + len(m) - 1].sum())
                i += len(m) - 1
        return sigma, psi, xi

    def variances(x):
        sigma, psi, xi = unpack(x)
        v = {}
        for k, (a, m) in enumerate(aggs.items()):
            for j, c in enumerate(m):
                v[c] = sigma**2 * psi[k] * (xi[a][j] if a in xi else 1.0)
        return np.array([v[c] for c in comps])

    rng = np.random.default_rng(3)
    for _ in range(3):
        psi = rng.dirichlet(np.ones(len(aggs)))
        x = [rng.uniform(0.3, 2.0), *psi[:-1]]
        for m in aggs.values():
            if len(m) > 1:
                x += list(rng.dirichlet(np.ones(len(m)))[:-1])
        x = np.array(x)
        sigma, psi, xi = unpack(x)
        generative = logp("sigma_total", sigma) + logp("aggregate_shares", psi) + sum(
            logp(f"shares_{a}", xi[a]) for a in xi)
        eps = 1e-6
        jac = np.column_stack([(variances(x + eps * e) - variances(x - eps * e)) / (2 * eps)
                               for e in np.eye(len(x))])
        expected = generative - np.log(abs(np.linalg.det(jac)))
        got = float(budget_logp(variances(x), priors, comps, np).eval())
        assert got == pytest.approx(expected, abs=1e-6)
