"""The across-seed rule for measurements without per-example values (mean over seeds with the standard
error over seeds, and its best set), and how the spread between seeds compares with one seed's test
error."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Optional, Sequence

import numpy as np

from harness.errors import UserError
from harness.evidence.best import ACROSS_SEEDS, BestSet, best_of

ACROSS_SEEDS_RULE = ("the best mean over seeds, and every model whose mean is within the combined standard error "
                     "of it, |a - b| <= sqrt(se_a^2 + se_b^2); the error is the standard error over seeds (sd / "
                     "sqrt(seeds)), or the measurement's own for a model with one seed. Not a significance test: "
                     "it covers the variation between training runs (and between sample draws), not which test "
                     "examples were drawn, since every seed uses the same ones.")

SEEDS = "seeds"
TEST_EXAMPLES = "test examples"


@dataclass(frozen=True)
class SeedSummary:
    """One model's measurement over its seeds: the mean, its standard error, how many seeds, and
    whether the error is over seeds (``seeds_included``) or, with one seed, the measurement's own (NaN
    when it has none)."""

    mean: float
    stderr: float
    seeds: int
    seeds_included: bool

    def as_dict(self) -> dict:
        return {"mean": self.mean, "stderr": self.stderr, "seeds": self.seeds, "seeds_included": self.seeds_included}


def _finite(values: Sequence[float], what: str) -> np.ndarray:
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    if v.size == 0:
        raise UserError(f"no {what} given: at least one seed is needed")
    if not np.isfinite(v).all():
        raise UserError(f"the {what} hold NaN or infinite values: {v.tolist()}")
    return v


def _own_errors(stderrs: Optional[Sequence[Optional[float]]], seeds: int) -> np.ndarray:
    """The measurements' own standard errors as floats, NaN where a seed has none."""
    if stderrs is None:
        return np.full(seeds, math.nan)
    se = np.array([math.nan if s is None else float(s) for s in stderrs])
    if se.size != seeds:
        raise UserError(f"{seeds} values but {se.size} standard errors: give one per seed (None where there is none)")
    return se


def across_seeds(values: Sequence[float], stderrs: Optional[Sequence[Optional[float]]] = None) -> SeedSummary:
    """The across-seed rule's cell: with several seeds the mean and sd / sqrt(seeds) (ddof 1); with one
    seed its value and its own standard error (``stderrs[0]``, NaN without one), flagged
    ``seeds_included=False``."""
    v = _finite(values, "per-seed values")
    if v.size >= 2:
        return SeedSummary(float(v.mean()), float(v.std(ddof=1) / math.sqrt(v.size)), int(v.size), True)
    return SeedSummary(float(v[0]), float(_own_errors(stderrs, 1)[0]), 1, False)


def best_across_seeds(summaries: Mapping[str, SeedSummary], higher_is_better: bool) -> BestSet:
    """The best set under :data:`ACROSS_SEEDS_RULE` (a missing error counts as 0)."""
    best = best_of({m: s.mean for m, s in summaries.items()}, higher_is_better)
    top = summaries[best]

    def error(s: SeedSummary) -> float:
        return s.stderr if math.isfinite(s.stderr) else 0.0

    members = [best] + [m for m, s in summaries.items()
                        if m != best and abs(s.mean - top.mean) <= math.hypot(error(s), error(top))]
    return BestSet(best, tuple(members), ACROSS_SEEDS, ACROSS_SEEDS_RULE)


@dataclass(frozen=True)
class SeedSpread:
    """How much a model's number moves between training runs, beside one run's test error.

    ``seed_sd``: the standard deviation of the per-seed values (NaN with one seed); ``seed_stderr``:
    seed_sd / sqrt(seeds), the error of the mean over seeds; ``test_stderr``: the mean of the seeds'
    own (within-seed, test-set) standard errors (NaN when none has one); ``ratio``: seed_sd /
    test_stderr; ``dominant``: :data:`SEEDS` when another training run moves the number more than one
    run's test error says (ratio > 1), :data:`TEST_EXAMPLES` when not, ``""`` when it cannot be told."""

    seeds: int
    seed_sd: float
    seed_stderr: float
    test_stderr: float
    ratio: float
    dominant: str

    def as_dict(self) -> dict:
        return {"seeds": self.seeds, "seed_sd": self.seed_sd, "seed_stderr": self.seed_stderr,
                "test_stderr": self.test_stderr, "ratio": self.ratio, "dominant": self.dominant}


def seed_spread(values: Sequence[float], stderrs: Sequence[Optional[float]]) -> SeedSpread:
    """The seed spread of one model's per-seed values against their mean within-seed standard error
    (``stderrs``, one per seed, None where a seed has none; for per-example values,
    ``PerExample.seed_means()`` and ``PerExample.seed_stderrs()``)."""
    v = _finite(values, "per-seed values")
    se = _own_errors(stderrs, v.size)
    sd = float(v.std(ddof=1)) if v.size >= 2 else math.nan
    known = se[np.isfinite(se)]
    test = float(known.mean()) if known.size else math.nan
    if math.isfinite(sd) and math.isfinite(test) and (test > 0 or sd > 0):
        ratio = sd / test if test > 0 else math.inf
        dominant = SEEDS if ratio > 1 else TEST_EXAMPLES
    else:
        ratio, dominant = math.nan, ""
    return SeedSpread(int(v.size), sd, sd / math.sqrt(v.size), test, ratio, dominant)
