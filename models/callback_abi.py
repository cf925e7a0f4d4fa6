"""The C ABI of nutpie's callbacks: their signatures, and the packed arrays read back from the
addresses that travel in nutpie's user data (shared by every model's callbacks)."""

from __future__ import annotations

import numpy as np
from numba import carray, types
from numba.core import cgutils
from numba.extending import intrinsic

from .kernel_cache import kernel


@intrinsic
def _pointer(typingctx, address):
    """An int64 address as a void pointer (the data arrays' addresses travel in user data)."""
    def codegen(context, builder, signature, args):
        return builder.inttoptr(args[0], cgutils.voidptr_t)

    return types.voidptr(types.int64), codegen


LOGP_SIG = types.int64(types.uint64, types.CPointer(types.double),
                       types.CPointer(types.double), types.CPointer(types.double),
                       types.voidptr)
EXPAND_SIG = types.int64(types.uint64, types.uint64, types.CPointer(types.double),
                         types.CPointer(types.double), types.voidptr)


@kernel
def _arrays(user_data):
    hdr = carray(user_data, (4,), dtype=np.int64)
    return (carray(_pointer(hdr[0]), (hdr[1],), dtype=np.float64),
            carray(_pointer(hdr[2]), (hdr[3],), dtype=np.int64))
