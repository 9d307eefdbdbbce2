"""The steps of every curve, and which of them made a metric worse: what `history regressions` lists and
the site marks.

Each piece of a series (one protocol) is fitted on its own (:func:`harness.history.steps.fit_steps`);
a step never spans a protocol change. A step is a **regression** when it moved the metric the wrong
way for its direction and by more than the tolerance floor its metric declares (the regression gate's
floor, :class:`harness.contracts.Tolerance`: a difference for quality figures, a ratio for speed), so
a significant but negligible move is not listed. A metric of unknown direction has steps but no
regressions. A regression is **still worse** when the curve's latest segment is worse than the level
before the step by more than the same floor, and **recovered** otherwise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

from harness.contracts import Tolerance
from harness.history.series import History, Series
from harness.history.steps import DEFAULT_ALPHA, fit_steps


@dataclass
class Found:
    """One step of one series."""

    series: Series
    good: str  # the last commit before the step
    bad: str  # the first commit after it
    good_position: int
    bad_position: int
    before: float
    before_se: float
    after: float
    after_se: float
    latest: float  # the level of the piece's last segment
    z: float
    p: float
    worse: Optional[bool]  # None: the metric's direction is unknown
    beyond_floor: bool
    still_worse: bool

    @property
    def regression(self) -> bool:
        return bool(self.worse) and self.beyond_floor

    def change(self) -> str:
        """``+0.31 (+10.2%)``, or ``x0.52`` for a ratio-toleranced (speed) figure."""
        if _tolerance(self.series).ratio and self.before > 0:
            return f"x{self.after / self.before:.3g}"
        delta = self.after - self.before
        pct = f" ({100 * delta / abs(self.before):+.3g}%)" if self.before else ""
        return f"{delta:+.4g}{pct}"

    def to_dict(self) -> dict:
        key, rec = self.series.key, self.series.latest
        return {"dataset": key.dataset, "model": key.model, "metric": key.id, "machine": key.machine,
                "unit": rec.get("unit"), "higher_is_better": rec.get("higher_is_better"), "good": self.good,
                "bad": self.bad, "before": self.before, "before_se": self.before_se, "after": self.after,
                "after_se": self.after_se, "latest": self.latest, "change": self.change(), "z": self.z, "p": self.p,
                "worse": self.worse, "beyond_floor": self.beyond_floor, "regression": self.regression,
                "still_worse": self.still_worse, "bisect": bisect_command(self)}


def _tolerance(series: Series) -> Tolerance:
    doc = series.latest.get("tolerance")
    return Tolerance(**doc) if doc else Tolerance()


def worse_beyond(before: float, after: float, higher_is_better: bool, tol: Tolerance) -> bool:
    """Whether ``after`` is worse than ``before`` by more than the floor ``tol``."""
    worse_by = (before - after) if higher_is_better else (after - before)
    if worse_by <= 0:
        return False
    if tol.ratio and before > 0 and after >= 0:
        ratio = (before / after if after > 0 else math.inf) if higher_is_better else after / before
        return ratio > tol.factor
    return worse_by > tol.floor(before)


def bisect_command(found: Found) -> str:
    key = found.series.key
    return (f"python -m harness history bisect {found.bad[:12]} {found.good[:12]} --metric {key.id} "
            f"--model {key.model} --dataset {key.dataset}")


def series_steps(series: Series, alpha: float = DEFAULT_ALPHA, floor: bool = True) -> list:
    """Every significant step of ``series``, piece by piece (:class:`Found`)."""
    out = []
    hib = series.higher_is_better
    tol = _tolerance(series) if floor else Tolerance()
    for piece in series.pieces():
        fit = fit_steps([p.mean for p in piece], [p.stderr for p in piece], alpha)
        if fit is None or not fit.steps:
            continue
        latest = fit.means[-1]
        for step in fit.steps:
            worse = None if hib is None else (step.after < step.before if hib else step.after > step.before)
            beyond = hib is not None and worse_beyond(step.before, step.after, hib, tol)
            still = hib is not None and worse_beyond(step.before, latest, hib, tol)
            g, b = piece[step.index - 1], piece[step.index]
            out.append(Found(series, g.commit, b.commit, g.position, b.position, step.before, step.before_se,
                             step.after, step.after_se, latest, step.z, step.p, worse, beyond, still))
    return out


def all_steps(history: History, alpha: float = DEFAULT_ALPHA, floor: bool = True) -> list:
    return [f for s in history.series.values() for f in series_steps(s, alpha, floor)]


def regressions(history: History, alpha: float = DEFAULT_ALPHA, floor: bool = True) -> list:
    """The steps that made a metric worse beyond its floor, newest first."""
    found = [f for f in all_steps(history, alpha, floor) if f.regression]
    return sorted(found, key=lambda f: (-f.bad_position, f.series.key.dataset, f.series.key.model, f.series.key.id))


def newer_than(found: list, position: int) -> list:
    """The regressions that are still worse and whose first bad commit comes after ``position``."""
    return [f for f in found if f.still_worse and f.bad_position > position]
