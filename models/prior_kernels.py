"""Log densities of the scalar priors the compiled fast path supports, with their derivative.

Each prior travels as four floats: a code and up to three parameters (``encode``). The
constants are PyMC's, so the fast path's log density equals the PyMC model's exactly; a prior
outside this list makes the fast path decline (the model is then compiled by PyMC as before).
"""

from __future__ import annotations

import math

import numpy as np

from .kernel_cache import kernel

# code: (distribution, parameter names in order)
CODES = {
    0: ("Normal", ("mu", "sigma")), 1: ("HalfNormal", ("sigma",)), 2: ("Exponential", ("lam",)),
    3: ("HalfStudentT", ("nu", "sigma")), 4: ("HalfCauchy", ("beta",)),
    5: ("Gamma", ("alpha", "beta")), 6: ("InverseGamma", ("alpha", "beta")),
    7: ("LogNormal", ("mu", "sigma")), 8: ("StudentT", ("nu", "mu", "sigma")),
    9: ("Cauchy", ("alpha", "beta")),
}
POSITIVE = {1, 2, 3, 4, 5, 6, 7}


def encode(prior, positive: bool) -> np.ndarray | None:
    """[code, p1, p2, p3] of a ``pymc_extras`` Prior, or None when the fast path has no kernel
    for it (another distribution, a parameter that is itself a prior, dims, a transform)."""
    for code, (name, params) in CODES.items():
        if prior.distribution != name or (code in POSITIVE) != positive:
            continue
        if set(prior.parameters) != set(params) or getattr(prior, "dims", ()) or \
                getattr(prior, "transform", None):
            return None
        try:
            values = [float(prior.parameters[p]) for p in params]
        except (TypeError, ValueError):
            return None
        return np.array([code, *values, *[0.0] * (3 - len(values))])
    return None


@kernel
def prior_logp(spec, x):
    """(log density at x, its derivative in x)."""
    code = int(spec[0])
    a, b, c = spec[1], spec[2], spec[3]
    if code == 0:
        z = (x - a) / b
        return -0.5 * math.log(2 * math.pi) - math.log(b) - 0.5 * z * z, -z / b
    if code == 1:
        return (0.5 * math.log(2 / math.pi) - math.log(a) - 0.5 * x * x / (a * a),
                -x / (a * a))
    if code == 2:
        return math.log(a) - a * x, -a
    if code == 3:
        nu, s = a, b
        t = 1.0 + x * x / (nu * s * s)
        lp = (math.log(2.0) + math.lgamma((nu + 1) / 2) - math.lgamma(nu / 2)
              - 0.5 * math.log(nu * math.pi * s * s) - (nu + 1) / 2 * math.log(t))
        return lp, -(nu + 1) * x / (nu * s * s * t)
    if code == 4:
        t = 1.0 + (x / a) ** 2
        return math.log(2 / math.pi) - math.log(a) - math.log(t), -2 * x / (a * a * t)
    if code == 5:
        return (a * math.log(b) - math.lgamma(a) + (a - 1) * math.log(x) - b * x,
                (a - 1) / x - b)
    if code == 6:
        return (a * math.log(b) - math.lgamma(a) - (a + 1) * math.log(x) - b / x,
                -(a + 1) / x + b / (x * x))
    if code == 7:
        lx = math.log(x)
        z = (lx - a) / b
        return (-0.5 * math.log(2 * math.pi) - math.log(b) - lx - 0.5 * z * z,
                (-1.0 - z / b) / x)
    if code == 8:
        nu, mu, s = a, b, c
        z = (x - mu) / s
        t = 1.0 + z * z / nu
        lp = (math.lgamma((nu + 1) / 2) - math.lgamma(nu / 2) - 0.5 * math.log(nu * math.pi)
              - math.log(s) - (nu + 1) / 2 * math.log(t))
        return lp, -(nu + 1) * z / (nu * s * t)
    z = (x - a) / b
    t = 1.0 + z * z
    return -math.log(math.pi) - math.log(b) - math.log(t), -2 * z / (b * t)
