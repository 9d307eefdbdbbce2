"""The decision rule of a comparison: is a row worse, better or unchanged?

A row is *worse* only when both hold:

1. it moved in the worse direction by more than its **tolerance floor**
   (:class:`harness.contracts.Tolerance`, declared by the metric's output): ``max(absolute,
   relative * |reference|)`` for quality measurements; for speed a ratio: worse by more than a factor
   ``1 / (1 - relative)`` (2x by default: half the throughput, or twice the latency);
2. the seeds' spread does not explain it: a one-sided **Welch t-test** from the summary statistics
   (``scipy.stats.ttest_ind_from_stats``, ``equal_var=False``) gives p < alpha. When either side has
   a single seed a one-sided **z-test** uses the standard errors; when a standard error is unknown
   the floor alone decides; when both sides have zero spread (a deterministic model) any change
   beyond the floor counts.

*better* is the mirror image.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum
from typing import Optional

from harness.comparison.verdicts import Verdict
from harness.contracts import Tolerance

DEFAULT_ALPHA = 0.01


class SignificanceTest(str, Enum):
    """Which test said whether the seeds' spread explains a change (see the module doc)."""

    WELCH = "welch"  # both sides have several seeds
    Z = "z"  # a side has one seed: the standard errors
    NO_SPREAD = "no-spread"  # both standard errors are zero: any change beyond the floor counts
    FLOOR_ONLY = "floor-only"  # a standard error is unknown: the floor alone decides
    PAIRED = "paired"  # per-example values on the same test examples: the paired difference's t

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class Stats:
    """One side of a comparison: mean over seeds, its standard error (NaN if unknown), seed count."""

    mean: float
    stderr: float
    n: int


@dataclass(frozen=True)
class Decision:
    verdict: Verdict  # WORSE, BETTER or UNCHANGED
    delta: float  # current - reference
    worse_by: float  # positive when current is worse (in the metric's direction)
    ratio: float  # current / reference (NaN when the reference is 0)
    beyond_floor: bool  # moved past the floor (either way)
    p_worse: Optional[float]  # one-sided p-value of "current is worse"; None: floor only
    p_better: Optional[float]
    test: SignificanceTest


def _tests(base: Stats, cur: Stats, higher_is_better: bool) -> tuple:
    """(p_worse, p_better, test name) for the hypothesis that the current mean is worse/better."""
    from scipy import stats

    worse_by = (base.mean - cur.mean) if higher_is_better else (cur.mean - base.mean)
    if not (math.isfinite(base.stderr) and math.isfinite(cur.stderr)):
        return None, None, SignificanceTest.FLOOR_ONLY
    if base.stderr == 0 and cur.stderr == 0:
        # No spread on either side (a deterministic model): nothing but the floor can excuse a change.
        return (0.0 if worse_by > 0 else 1.0), (0.0 if worse_by < 0 else 1.0), SignificanceTest.NO_SPREAD
    if base.n >= 2 and cur.n >= 2:
        sd_cur, sd_base = cur.stderr * math.sqrt(cur.n), base.stderr * math.sqrt(base.n)
        worse_alt, better_alt = ("less", "greater") if higher_is_better else ("greater", "less")
        p_worse = stats.ttest_ind_from_stats(cur.mean, sd_cur, cur.n, base.mean, sd_base, base.n,
                                             equal_var=False, alternative=worse_alt).pvalue
        p_better = stats.ttest_ind_from_stats(cur.mean, sd_cur, cur.n, base.mean, sd_base, base.n,
                                              equal_var=False, alternative=better_alt).pvalue
        return float(p_worse), float(p_better), SignificanceTest.WELCH
    z = worse_by / math.hypot(base.stderr, cur.stderr)
    return float(stats.norm.sf(z)), float(stats.norm.cdf(z)), SignificanceTest.Z


def _paired_tests(paired, higher_is_better: bool) -> tuple:
    """(p_worse, p_better, PAIRED) from a :class:`harness.evidence.PairedDifference` of current against
    the reference (difference = current - reference)."""
    from scipy import stats

    worse_by = -paired.difference if higher_is_better else paired.difference
    if paired.stderr == 0:
        return (0.0 if worse_by > 0 else 1.0), (0.0 if worse_by < 0 else 1.0), SignificanceTest.PAIRED
    t = worse_by / paired.stderr
    return float(stats.t.sf(t, paired.df)), float(stats.t.cdf(t, paired.df)), SignificanceTest.PAIRED


def decide(base: Stats, cur: Stats, higher_is_better: bool, tolerance: Tolerance,
           alpha: float = DEFAULT_ALPHA, paired=None) -> Decision:
    """Is ``cur`` worse than ``base``, better, or unchanged within floor and noise? (See module doc.)
    ``paired``: the :class:`harness.evidence.PairedDifference` of current against reference, where both
    kept per-example values on the same test examples; the test is then paired."""
    delta = cur.mean - base.mean
    worse_by = -delta if higher_is_better else delta
    ratio = cur.mean / base.mean if base.mean != 0 else math.nan
    if tolerance.ratio and base.mean > 0 and cur.mean >= 0:
        # Worse-way ratio: base/cur for higher-is-better (throughput), cur/base otherwise (time, memory).
        worse_ratio = (base.mean / cur.mean if cur.mean > 0 else math.inf) if higher_is_better else ratio
        past_worse = worse_ratio > tolerance.factor
        past_better = worse_ratio < 1 / tolerance.factor
    else:
        allowed = tolerance.floor(base.mean)
        past_worse, past_better = worse_by > allowed, -worse_by > allowed
    if paired is not None:
        p_worse, p_better, test = _paired_tests(paired, higher_is_better)
    else:
        p_worse, p_better, test = _tests(base, cur, higher_is_better)
    if past_worse and (p_worse is None or p_worse < alpha):
        verdict = Verdict.WORSE
    elif past_better and (p_better is None or p_better < alpha):
        verdict = Verdict.BETTER
    else:
        verdict = Verdict.UNCHANGED
    return Decision(verdict, delta, worse_by, ratio, past_worse or past_better, p_worse, p_better, test)


