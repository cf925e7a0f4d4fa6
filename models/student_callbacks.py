"""nutpie's C callbacks for E1 with the Student-t likelihood (as ``e1_callbacks.py``'s; apart so
that a Gaussian fit never compiles the Student-t kernels)."""

from __future__ import annotations

import numpy as np
from numba import carray

from .callback_abi import EXPAND_SIG, LOGP_SIG, _arrays
from .e1_layout import H_NX
from .kernel_cache import callback
from .student_kernels import e1_student_expand, e1_student_logp_grad


@callback(LOGP_SIG)
def student_logp_c(dim, x_, out_, logp_, user_data):
    F, Z = _arrays(user_data)
    if dim != Z[H_NX]:
        return -1
    x = carray(x_, (dim,))
    out = carray(out_, (dim,))
    try:  # an exception cannot cross into nutpie: report a failed evaluation instead
        lp = e1_student_logp_grad(x, F, Z, out)
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
def student_expand_c(dim, expanded, x_, out_, user_data):
    F, Z = _arrays(user_data)
    if dim != Z[H_NX]:
        return -1
    try:
        e1_student_expand(carray(x_, (dim,)), F, Z, carray(out_, (expanded,)))
    except Exception:  # noqa: BLE001
        return -2
    return 0
