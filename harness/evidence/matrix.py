"""Every pair of models on one dataset and measurement compared paired, Holm-corrected at a declared
level, and the best set that follows from it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Mapping, Sequence, Tuple

import numpy as np
import pandas as pd

from harness.errors import UserError
from harness.evidence.best import PAIRED, BestSet, best_of
from harness.evidence.holm import holm_adjust
from harness.evidence.paired import PairedDifference, paired_difference
from harness.evidence.samples import PerExample, check_aligned

PAIRED_RULE = ("the best mean, and every model whose paired difference from it is not significant at level "
               "{alpha}: two-sided tests of every pair of models, Holm-corrected over all pairs of the matrix, "
               "so the chance that any truly equal pair is called different, the pairs with the best "
               "included, stays at or below {alpha} whichever model came out best.")

FIELDS = ("difference", "stderr", "df", "p_value", "p_adjusted")


@dataclass(frozen=True)
class PairMatrix:
    """All pairs of ``models`` compared paired at level ``alpha``.

    ``pairs``: (a, b) -> :class:`PairedDifference` for a before b in ``models``; ``adjusted``: the same
    keys -> the Holm-adjusted p-value over the whole family of pairs; ``means``: each model's mean over
    its seeds and the examples; ``best``: the :class:`BestSet` under :data:`PAIRED_RULE`. Read any pair
    in either order with :meth:`pair`, :meth:`p_adjusted` and :meth:`significant`."""

    models: Tuple[str, ...]
    alpha: float
    higher_is_better: bool
    pairs: Mapping[Tuple[str, str], PairedDifference]
    adjusted: Mapping[Tuple[str, str], float]
    means: Mapping[str, float]
    best: BestSet

    def pair(self, a: str, b: str) -> PairedDifference:
        """``a`` against ``b`` (difference = mean(a) - mean(b))."""
        if (a, b) in self.pairs:
            return self.pairs[(a, b)]
        if (b, a) in self.pairs:
            return self.pairs[(b, a)].reversed()
        raise KeyError(f"no pair ({a}, {b}) in the matrix of {', '.join(self.models)}")

    def p_adjusted(self, a: str, b: str) -> float:
        return self.adjusted[(a, b)] if (a, b) in self.adjusted else self.adjusted[(b, a)]

    def significant(self, a: str, b: str) -> bool:
        """Whether a and b differ at level alpha after Holm's correction."""
        return self.p_adjusted(a, b) <= self.alpha

    @property
    def seeds_included(self) -> bool:
        """Whether every pair's error includes the variation between training runs."""
        return all(p.seeds_included for p in self.pairs.values())

    def frame(self, field: str) -> pd.DataFrame:
        """One of :data:`FIELDS` as a models x models table, row a against column b (the difference is
        row minus column); the diagonal is NaN."""
        if field not in FIELDS:
            raise ValueError(f"field must be one of {FIELDS}, not {field!r}")
        table = pd.DataFrame(np.nan, index=list(self.models), columns=list(self.models))
        for a in self.models:
            for b in self.models:
                if a != b and field == "p_adjusted":
                    table.loc[a, b] = self.p_adjusted(a, b)
                elif a != b:
                    table.loc[a, b] = getattr(self.pair(a, b), field)
        return table

    def as_dict(self) -> dict:
        return {"models": list(self.models), "alpha": self.alpha, "higher_is_better": self.higher_is_better,
                "means": dict(self.means), "best": self.best.as_dict(), "seeds_included": self.seeds_included,
                "pairs": [dict(self.pairs[k].as_dict(), p_adjusted=self.adjusted[k],
                               significant=self.adjusted[k] <= self.alpha) for k in self.pairs]}


def paired_matrix(models: Sequence[PerExample], higher_is_better: bool, alpha: float = 0.05) -> PairMatrix:
    """Compare every pair of ``models`` (one dataset, one measurement, one likelihood kind: exact values,
    bounds and estimates are not ranked together) with :func:`paired_difference`, correct the pairs'
    p-values with Holm's method at level ``alpha``, and mark the best set (:data:`PAIRED_RULE`).

    Raises :class:`UserError` for a repeated model name, a level outside (0, 1), or models evaluated
    on different test examples."""
    if not 0 < alpha < 1:
        raise UserError(f"the significance level must lie strictly between 0 and 1, not {alpha}")
    names = [m.name for m in models]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise UserError(f"each model may appear once in a paired comparison; repeated: {', '.join(repeated)}")
    for other in models[1:]:
        check_aligned(models[0], other)
    pairs: Dict[Tuple[str, str], PairedDifference] = {}
    for i, a in enumerate(models):
        for b in models[i + 1:]:
            pairs[(a.name, b.name)] = paired_difference(a, b)
    adjusted = dict(zip(pairs, holm_adjust([p.p_value for p in pairs.values()]).tolist()))
    means = {m.name: float(m.values.mean()) for m in models}
    best = best_of(means, higher_is_better)
    members = [best] + [n for n in names if n != best
                        and adjusted[(best, n) if (best, n) in adjusted else (n, best)] > alpha]
    rule = PAIRED_RULE.format(alpha=f"{alpha:g}")
    return PairMatrix(tuple(names), alpha, higher_is_better, pairs, adjusted, means,
                      BestSet(best, tuple(members), PAIRED, rule))
