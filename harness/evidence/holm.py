"""Holm's step-down correction: adjusted p-values for a family of tests that keep the chance of any
false rejection (the family-wise error rate) at or below the declared level."""

from __future__ import annotations

from typing import Sequence

import numpy as np


def holm_adjust(p_values: Sequence[float]) -> np.ndarray:
    """Holm-adjusted p-values, in the order given: with p sorted ascending, the k-th (k = 1..m) becomes
    ``max over j <= k of min(1, (m - j + 1) p_(j))``. Rejecting every hypothesis whose adjusted value is
    at most alpha is Holm's procedure at level alpha: walk up the sorted p-values, reject while
    ``p_(k) <= alpha / (m - k + 1)``, stop at the first that is not. Valid under any dependence between
    the tests. Raises ValueError for a value outside [0, 1] or NaN."""
    p = np.asarray(p_values, dtype=np.float64)
    if p.ndim != 1:
        raise ValueError(f"p-values must be a flat sequence, not shape {p.shape}")
    if np.isnan(p).any() or (p < 0).any() or (p > 1).any():
        raise ValueError(f"p-values must lie in [0, 1]: {p.tolist()}")
    m = p.size
    order = np.argsort(p, kind="stable")
    steps = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))
    adjusted = np.empty(m)
    adjusted[order] = steps
    return adjusted
