"""Where the compiled kernels are cached, keyed by their sources.

numba's own cache checks only the timestamp of the file that defines a function, not of the
kernels it calls from other files: after a change to ``kernels.py`` alone, the cached
``e1_kernels`` callbacks would still hold the old code. So every kernel is cached in a folder
named by a digest of all the kernel sources (under ``NUMBA_CACHE_DIR`` when set, else the
user's cache folder): any change compiles afresh, an unchanged installation loads.
"""

from __future__ import annotations

import hashlib
import os
from contextlib import contextmanager
from pathlib import Path

import numba

SOURCES = ("kernels.py", "gaussian_kernels.py", "prior_kernels.py", "e1_layout.py",
           "e1_kernels.py", "e1_callbacks.py", "pointwise_kernels.py", "student_kernels.py",
           "student_callbacks.py", "callback_abi.py", "kernel_cache.py",
           "measurement_layout.py", "measurement_leaves.py", "measurement_kernels.py",
           "measurement_head.py", "measurement_callbacks.py")
HERE = Path(__file__).resolve().parent


def cache_dir() -> Path:
    digest = hashlib.sha256(b"".join((HERE / s).read_bytes() for s in SOURCES)).hexdigest()
    base = os.environ.get("NUMBA_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "misalign")
    return Path(base) / f"kernels-{digest[:16]}"


_DIR = str(cache_dir())


@contextmanager
def _located():
    old = numba.config.CACHE_DIR
    numba.config.CACHE_DIR = _DIR  # read when a function's cache is created, at decoration
    try:
        yield
    finally:
        numba.config.CACHE_DIR = old


def kernel(fn=None, *, parallel: bool = False, fastmath: bool | set = False,
           inline: bool = False):
    """``numba.njit`` with numpy's error model (a division by zero gives inf, not an exception
    nutpie cannot see), cached under the sources' digest. ``inline``: inlined into every
    caller at numba's IR level (a per-cell helper taking arrays otherwise pays a reference
    count per array per call, more than its arithmetic)."""
    def wrap(f):
        with _located():
            return numba.njit(cache=True, error_model="numpy", parallel=parallel,
                              fastmath=fastmath, inline="always" if inline else "never")(f)

    return wrap(fn) if fn is not None else wrap


def callback(signature):
    """``numba.cfunc`` for nutpie's C callbacks, cached the same way."""
    def wrap(f):
        with _located():
            return numba.cfunc(signature, cache=True, error_model="numpy")(f)

    return wrap
