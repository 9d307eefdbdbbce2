"""Step detection on one curve: a piecewise-constant fit, weighted by each point's error, whose number
of steps a penalty picks; every step it keeps is significant at a declared level.

In the spirit of asv's detector (a penalised piecewise-constant fit whose penalty decides how many
steps there are), but least squares weighted by the points' errors, with the penalty set by a
significance level rather than an information criterion, so the false-positive rate is declared:

1. **Weights.** Each point carries the standard error of its mean over seeds. Two or three seeds
   estimate a spread poorly, so a point's variance is taken as the mean of its own squared error and
   the curve's median one (the median alone where its own is unknown, 1 for all when none is known),
   times a common **scale**.
2. **Scale.** How much the curve scatters around its segments' means, from the weighted residuals
   (``n - k - 1`` degrees of freedom for ``k`` steps), never below 1 when errors were given: the stated
   errors are a floor on the noise, and a curve that scatters more between commits than its seeds say
   (other machines, load) gets wider errors, not more steps.
3. **Gate.** A curve has a step only if splitting it once into a before and an after differs: the
   largest two-sample t-score over the ``n - 1`` splits (each with its own pooled scale) must pass
   Student's t at the two-sided ``alpha / (n - 1)`` level (Bonferroni). On a curve of pure noise this
   fails with probability at most ``alpha``, the declared false-positive rate per curve.
4. **Fit.** Past the gate, the exact minimiser, by dynamic programming over all segmentations, of
   ``sum_i (y_i - mu_segment(i))^2 / var_i + beta * steps``, with ``beta`` the gate's squared t-score
   threshold (splitting a constant stretch at one place lowers the weighted squared error by ``z^2``);
   then each step is tested against its neighbouring segments and, while the weakest has a
   Bonferroni-adjusted p-value above ``alpha``, merged away; then the scale is re-estimated from the
   residuals and the fit made again until it settles.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import numpy as np

DEFAULT_ALPHA = 0.01
MIN_POINTS = 3  # a step needs a point on each side and a third to say how noisy the curve is
MAX_ROUNDS = 10  # fit, rescale, fit again: settles in two or three rounds
_MAD_TO_SD = 0.6744897501960817  # the median of |N(0, 1)|


@dataclass(frozen=True)
class Step:
    """A step between ``index - 1`` and ``index`` of the curve."""

    index: int
    before: float  # the weighted mean of the segment before
    before_se: float
    after: float
    after_se: float
    z: float  # (after - before) / its standard error
    p: float  # two-sided, Bonferroni-adjusted over the n - 1 places a step could go


@dataclass(frozen=True)
class Fit:
    segments: list  # (start, stop) index pairs, half-open
    means: list  # weighted mean of each segment
    steps: list  # Step
    sd: list  # each point's standard deviation as the fit used it
    scale: float  # how many times the points' stated errors the curve's scatter is (1 when they hold)


def relative_variances(stderrs: np.ndarray) -> tuple:
    """(each point's variance up to the common scale, whether any standard error was known): the mean
    of its own squared error and the curve's median one; the median where its own is unknown; 1 for
    every point when none is known."""
    se2 = np.where(np.isfinite(stderrs), stderrs, np.nan) ** 2
    known = se2[np.isfinite(se2)]
    if not known.size:
        return np.ones(len(stderrs)), False
    base = float(np.median(known))
    return 0.5 * (np.where(np.isfinite(se2), se2, base) + base), True


def _initial_scale(y: np.ndarray, u: np.ndarray) -> float:
    """The scale from the median absolute difference of successive points, which a few steps do not move."""
    d = np.abs(np.diff(y)) / np.sqrt(np.maximum(u[1:] + u[:-1], 1e-300))
    return (float(np.median(d)) / _MAD_TO_SD) ** 2 / 2


def threshold(n: int, dof: int, alpha: float) -> float:
    """The squared t-score a step needs: Student's t with ``dof`` degrees of freedom at the two-sided
    alpha / (n - 1) level."""
    from scipy import stats

    return float(stats.t.isf(alpha / (2 * max(1, n - 1)), max(1, dof))) ** 2


def _segmentation(y: np.ndarray, w: np.ndarray, beta: float) -> list:
    """Boundaries (0 = b_0 < b_1 < ... < b_k = n) minimising weighted squared error + beta per step."""
    n = len(y)
    cw = np.concatenate([[0.0], np.cumsum(w)])
    cwy = np.concatenate([[0.0], np.cumsum(w * y)])
    cwy2 = np.concatenate([[0.0], np.cumsum(w * y * y)])
    best = np.full(n + 1, np.inf)
    best[0] = -beta
    last = np.zeros(n + 1, dtype=int)
    for j in range(1, n + 1):
        i = np.arange(j)
        sw, swy = cw[j] - cw[i], cwy[j] - cwy[i]
        cost = np.maximum(cwy2[j] - cwy2[i] - swy * swy / sw, 0.0)
        total = best[i] + cost + beta
        k = int(np.argmin(total))
        best[j], last[j] = total[k], k
    bounds = [n]
    while bounds[-1] > 0:
        bounds.append(int(last[bounds[-1]]))
    return bounds[::-1]


def _segment_stats(y, w, start, stop) -> tuple:
    sw = float(np.sum(w[start:stop]))
    return float(np.sum(w[start:stop] * y[start:stop]) / sw), math.sqrt(1.0 / sw)


def _tests(y, var, bounds: list, dof: int) -> list:
    from scipy import stats

    w = 1.0 / var
    places, out = len(y) - 1, []
    for a, b, c in zip(bounds, bounds[1:], bounds[2:]):
        m1, s1 = _segment_stats(y, w, a, b)
        m2, s2 = _segment_stats(y, w, b, c)
        z = (m2 - m1) / math.hypot(s1, s2)
        out.append(Step(b, m1, s1, m2, s2, z, min(1.0, 2 * places * float(stats.t.sf(abs(z), max(1, dof))))))
    return out


def _scale(y, u, bounds: list, known: bool) -> Optional[float]:
    """The common scale from the weighted residuals around the segments' means, with n - k - 1 degrees
    of freedom (never below 1 when standard errors were given: they are a lower bound on the noise)."""
    dof = len(y) - (len(bounds) - 1)
    if dof < 1:
        return None
    w = 1.0 / u
    rss = sum(float(np.sum(w[a:b] * (y[a:b] - _segment_stats(y, w, a, b)[0]) ** 2)) for a, b in zip(bounds, bounds[1:]))
    c = rss / dof
    return max(1.0, c) if known else c


def _no_step(y, u, known: bool, alpha: float) -> bool:
    """The gate: no single split of the curve into a before and an after differs at ``alpha`` (the largest
    two-sample t-score over the n - 1 splits, each with its own pooled scale, Bonferroni-corrected)."""
    n = len(y)
    w = 1.0 / u
    cw, cwy, cwy2 = (np.cumsum(w * y**k) for k in range(3))
    w1, s1, q1 = cw[:-1], cwy[:-1], cwy2[:-1]  # the first b points, b = 1 .. n - 1
    w2, s2, q2 = cw[-1] - w1, cwy[-1] - s1, cwy2[-1] - q1
    rss = np.maximum(q1 - s1 * s1 / w1, 0.0) + np.maximum(q2 - s2 * s2 / w2, 0.0)
    scale = rss / (n - 2)
    if known:
        scale = np.maximum(scale, 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        z2 = (s2 / w2 - s1 / w1) ** 2 / (scale * (1.0 / w1 + 1.0 / w2))
    return not bool(np.any(np.nan_to_num(z2, nan=0.0, posinf=np.inf) > threshold(n, n - 2, alpha)))


def fit_steps(values, stderrs=None, alpha: float = DEFAULT_ALPHA) -> Optional[Fit]:
    """The steps of one curve (values in order; stderrs the points' standard errors, None or NaN where
    unknown), each significant at ``alpha``; None when the curve is too short or not finite."""
    y = np.asarray(values, dtype=float)
    se = np.full(len(y), np.nan) if stderrs is None else np.array(
        [math.nan if s is None else float(s) for s in stderrs])
    n = len(y)
    if n < MIN_POINTS or not np.all(np.isfinite(y)):
        return None
    u, known = relative_variances(se)
    floor = (1e-9 * max(1.0, float(np.max(np.abs(y))))) ** 2  # exact figures: any change is a step
    u = np.maximum(u, floor)
    bounds, steps = [0, n], []
    if _no_step(y, u, known, alpha):
        scale = _scale(y, u, bounds, known)
    else:
        scale = max(1.0, _initial_scale(y, u)) if known else _initial_scale(y, u)
        for _ in range(MAX_ROUNDS):
            var = np.maximum(scale * u, floor)
            new = _segmentation(y, 1.0 / var, threshold(n, n - 2, alpha))
            steps = _tests(y, var, new, n - len(new) + 1)
            while steps and max(s.p for s in steps) > alpha:
                new.remove(min(steps, key=lambda s: abs(s.z)).index)
                steps = _tests(y, var, new, n - len(new) + 1)
            rescaled = _scale(y, u, new, known)
            settled = new == bounds and (rescaled is None or math.isclose(rescaled, scale, rel_tol=1e-6))
            bounds = new
            if settled or rescaled is None:
                break
            scale = rescaled
    var = np.maximum(scale * u, floor)
    means = [_segment_stats(y, 1.0 / var, a, b)[0] for a, b in zip(bounds, bounds[1:])]
    return Fit(list(zip(bounds, bounds[1:])), means, steps, [float(v) for v in np.sqrt(var)], math.sqrt(scale))
