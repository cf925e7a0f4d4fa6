"""Nodes of the likelihood (leaves, or cells) grouped by *pattern*: which design cells a node
holds and how often, and its residual group (plus any key the caller adds). Nodes of one pattern
enter the Gaussian likelihood identically given the parameters, so sums over nodes become sums
over patterns of fixed data totals (count N_k, Σ S, Σ S² of the nodes' rating sums S)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class PatternTable:
    design_rows: np.ndarray  # (distinct design rows, design cells) counts
    pattern_design: np.ndarray  # (K,) each pattern's row in design_rows
    pattern_group: np.ndarray  # (K,) residual group
    node_pattern: np.ndarray  # (nodes,) each node's pattern
    node_n: np.ndarray  # (nodes,) ratings per node
    node_sum: np.ndarray  # (nodes,) Σ y per node
    node_group: np.ndarray  # (nodes,) residual group
    pat_n: np.ndarray  # (K,) ratings per node of the pattern
    pat_count: np.ndarray  # (K,) N_k nodes
    pat_sum: np.ndarray  # (K,) A_k = Σ S
    pat_sumsq: np.ndarray  # (K,) Q_k = Σ S²

    @classmethod
    def build(cls, y: np.ndarray, design: np.ndarray, n_design: int, node: np.ndarray,
              design_group: np.ndarray, node_key: np.ndarray | None = None) -> PatternTable:
        """``node``: each rating's node; ``node_key``: an extra integer per node that must also
        match within a pattern."""
        n_nodes = int(node.max()) + 1
        node_n = np.bincount(node, minlength=n_nodes).astype(np.float64)
        node_sum = np.bincount(node, weights=y, minlength=n_nodes)
        node_group = np.zeros(n_nodes, dtype=np.int64)
        node_group[node] = design_group[design]
        if np.any(design_group[design] != node_group[node]):
            raise ValueError("every node must hold design cells of one residual group")
        pair, count = np.unique(node.astype(np.int64) * n_design + design, return_counts=True)
        pn, pd_ = pair // n_design, pair % n_design
        bounds = np.flatnonzero(np.diff(pn)) + 1
        starts = np.r_[0, bounds]
        keys: dict[bytes, int] = {}
        node_pattern = np.empty(n_nodes, dtype=np.int64)
        rows = []
        for c, (a, b) in enumerate(zip(starts, np.r_[bounds, len(pn)], strict=True)):
            key = pd_[a:b].tobytes() + b"|" + count[a:b].tobytes()
            if node_key is not None:
                key += b"|" + int(node_key[c]).to_bytes(8, "little", signed=True)
            idx = keys.get(key)
            if idx is None:
                idx = keys[key] = len(rows)
                rows.append((pd_[a:b], count[a:b], c))
            node_pattern[c] = idx
        K = len(rows)
        design_keys: dict[bytes, int] = {}
        pattern_design = np.empty(K, dtype=np.int64)
        for i, (d, n, _) in enumerate(rows):
            pattern_design[i] = design_keys.setdefault(d.tobytes() + b"|" + n.tobytes(),
                                                       len(design_keys))
        design_rows = np.zeros((len(design_keys), n_design))
        for i, (d, n, _) in enumerate(rows):
            design_rows[pattern_design[i], d] = n
        firsts = np.array([c for _, _, c in rows], dtype=np.int64)
        return cls(
            design_rows=design_rows, pattern_design=pattern_design,
            pattern_group=node_group[firsts],
            node_pattern=node_pattern, node_n=node_n, node_sum=node_sum, node_group=node_group,
            pat_n=design_rows.sum(axis=1)[pattern_design],
            pat_count=np.bincount(node_pattern, minlength=K).astype(np.float64),
            pat_sum=np.bincount(node_pattern, weights=node_sum, minlength=K),
            pat_sumsq=np.bincount(node_pattern, weights=node_sum**2, minlength=K))

    @property
    def patterns(self) -> np.ndarray:
        """(K, design cells) counts of every pattern."""
        return self.design_rows[self.pattern_design]

    def design_means(self, f, xp):
        """Σ_d n_kd f_d per pattern (the distinct design rows times f, spread to patterns)."""
        g = xp.dot(self.design_rows, f)
        return g if len(self.design_rows) == len(self.pattern_design) else g[self.pattern_design]

    def resid_terms(self, g, w):
        """w_k Σ_{nodes of pattern k} (S − g_k)², per pattern."""
        return w * (self.pat_sumsq - 2.0 * g * self.pat_sum + self.pat_count * g**2)
