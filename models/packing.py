"""The packed arrays the compiled kernels read (``kernels.py``'s layout): float and int sections
addressed through a section table, and the nested levels' sections every likelihood shares."""

from __future__ import annotations

import numpy as np

from . import kernels as kk
from .recursion import LOG_2PI


class Pack:
    """Sections of float and int arrays, addressed by number (the layout of kernels.py)."""

    def __init__(self) -> None:
        self.sections: list[tuple[str, np.ndarray]] = []
        self.header = np.zeros(kk.HEADER, dtype=np.int64)

    def f(self, values) -> int:
        self.sections.append(("f", np.ascontiguousarray(values, dtype=np.float64).ravel()))
        return len(self.sections) - 1

    def i(self, values) -> int:
        self.sections.append(("i", np.ascontiguousarray(values, dtype=np.int64).ravel()))
        return len(self.sections) - 1

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        table = np.zeros(2 * len(self.sections), dtype=np.int64)
        n_int = kk.HEADER + len(table)
        f_parts, i_parts, nf = [], [], 0
        for s, (kind, arr) in enumerate(self.sections):
            if kind == "f":
                table[2 * s], nf = nf, nf + len(arr)
                f_parts.append(arr)
            else:
                table[2 * s], n_int = n_int, n_int + len(arr)
                i_parts.append(arr)
            table[2 * s + 1] = len(arr)
        F = np.concatenate(f_parts) if f_parts else np.zeros(1)
        Z = np.concatenate([self.header, table, *i_parts])
        return F, Z


def pack_levels(p: Pack, parents: list[tuple[str, np.ndarray]],
                level_params: list[np.ndarray] | None = None) -> None:
    """The nested levels above the first nodes (kernels._tree): parent indices, each node's
    variance parameter, children per node, and the recursion's constant."""
    const = 0.0
    for lev, (_, idx) in enumerate(parents):
        n_par = int(idx.max()) + 1
        k = np.bincount(idx, minlength=n_par)
        const += -0.5 * float(np.sum(k - 1)) * LOG_2PI
        s = p.i(idx)
        if lev == 0:
            p.header[kk.H_LEVELS] = s
        p.i(np.full(n_par, lev) if level_params is None else level_params[lev])
        p.f(k)
    p.header[kk.H_CONST] = p.f([const])
