"""Which models a column marks best, and by which rule (paired or across seeds), so a report can say
which rule marked each column."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Tuple

from harness.errors import UserError

PAIRED = "paired"
ACROSS_SEEDS = "across seeds"


@dataclass(frozen=True)
class BestSet:
    """The best model and every model not distinguishable from it. ``members`` starts with ``best``;
    ``rule`` is :data:`PAIRED` or :data:`ACROSS_SEEDS`; ``description`` states the rule for a legend."""

    best: str
    members: Tuple[str, ...]
    rule: str
    description: str

    def __contains__(self, model: str) -> bool:
        return model in self.members

    def as_dict(self) -> dict:
        return {"best": self.best, "members": list(self.members), "rule": self.rule,
                "description": self.description}


def best_of(means: Mapping[str, float], higher_is_better: bool) -> str:
    """The model with the best mean in the declared direction (the first one given on a tie)."""
    if not means:
        raise UserError("no models to rank: give at least one")
    bad = [m for m, v in means.items() if not math.isfinite(v)]
    if bad:
        raise UserError(f"cannot rank models whose mean is NaN or infinite: {', '.join(bad)}")
    sign = 1.0 if higher_is_better else -1.0
    return max(means, key=lambda m: sign * means[m])
