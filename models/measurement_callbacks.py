"""The C callbacks nutpie calls for the joint measurement model (``fast_sampler.py``): the
packed arrays travel as addresses in nutpie's user data; a failed evaluation is reported as a
status, since an exception cannot cross into nutpie's Rust code."""

from __future__ import annotations

import numpy as np
from numba import carray

from .callback_abi import EXPAND_SIG, LOGP_SIG, _arrays
from .kernel_cache import callback
from .measurement_head import measurement_expand, measurement_logp
from .measurement_layout import M_NX


@callback(LOGP_SIG)
def measurement_logp_c(dim, x_, out_, logp_, user_data):
    F, Z = _arrays(user_data)
    if dim != Z[M_NX]:
        return -1
    x = carray(x_, (dim,))
    out = carray(out_, (dim,))
    try:  # an exception cannot cross into nutpie: report a failed evaluation instead
        lp = measurement_logp(x, F, Z, out)
    except Exception:  # noqa: BLE001
        return 1
    logp_[0] = lp
    if not np.isfinite(lp):
        return 4
    for i in range(dim):
        if not np.isfinite(out[i]):
            return 3
    return 0


@callback(EXPAND_SIG)
def measurement_expand_c(dim, expanded, x_, out_, user_data):
    F, Z = _arrays(user_data)
    if dim != Z[M_NX]:
        return -1
    try:
        measurement_expand(carray(x_, (dim,)), F, Z, carray(out_, (expanded,)))
    except Exception:  # noqa: BLE001
        return -2
    return 0
