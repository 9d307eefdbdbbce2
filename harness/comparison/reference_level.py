"""Rows judged beyond a reference level (``Output.judge`` is ``Judge.BEYOND_REFERENCE``): the level each
entry carries and the one-sided decision about it.

Some statistics are two-sided around a level that held-out data itself scores (a copy test: far below
it the samples copy the training data, far above it they lie off the data; a model that fits better
moves from above towards it). Read by the direction alone, a model that fits better would be *worse*.
Such an output declares ``judge=Judge.BEYOND_REFERENCE`` and each of its measurements carries the level
in ``details[REFERENCE_LEVEL]``. With ``L`` that level and ``f`` the row's floor at ``L``
(``tolerance.floor(L)``), a value *lies past the level* when it is beyond ``L`` the worse way by more
than ``f`` (below ``L - f`` when higher is better, above ``L + f`` otherwise). Then:

- *worse*: the decision rule (:func:`harness.comparison.rule.decide`: past the floor, beyond the
  noise) says worse, and the current value lies past the level;
- *better*: the rule says better, and the reference value lay past the level (it copied, and copies less);
- otherwise *unchanged*, with a note saying why a move the rule would have called worse or better is not
  one (both values on the level's good side, or within the floor of it).

The level is the current entry's, else the reference's. An entry read from a results.csv carries none
(the CSV has no details): the row is not compared, with a note.
"""

from __future__ import annotations

import json
import math
from dataclasses import replace
from typing import Optional

import pandas as pd

from harness.comparison.rule import Decision, decide
from harness.comparison.verdicts import Verdict
from harness.contracts import REFERENCE_LEVEL, Judge, Output, Tolerance
from harness.formatting import number
from harness.jobs import JobStatus

NO_LEVEL = (f"judged beyond the level held-out data scores, but no measurement records it (details "
            f"{REFERENCE_LEVEL}); compare results directories rather than results.csv files")


def reference_levels(rows: pd.DataFrame) -> dict:
    """(model, dataset, metric identity) -> the mean of ``details[REFERENCE_LEVEL]`` over the ok rows that
    carry it (a store's rows; a CSV's have no details and give none)."""
    if rows.empty or "details" not in rows:
        return {}
    ok = rows[(rows["status"] == JobStatus.OK) & rows["details"].astype(str).str.contains(REFERENCE_LEVEL,
                                                                                         regex=False)]
    levels: dict = {}
    for r in ok.itertuples(index=False):
        details = r.details if isinstance(r.details, dict) else json.loads(r.details)
        value = details.get(REFERENCE_LEVEL)
        if isinstance(value, (int, float)) and math.isfinite(value):
            levels.setdefault((r.model, r.dataset, r.id), []).append(float(value))
    return {key: sum(v) / len(v) for key, v in levels.items()}


def _past(value: float, level: float, floor: float, higher_is_better: bool) -> bool:
    return value < level - floor if higher_is_better else value > level + floor


def judge(ref, cur, declared: Optional[Output], higher_is_better: bool, tolerance: Tolerance,
          alpha: float, paired=None) -> tuple[Optional[Decision], str]:
    """``(decision, note)`` for a quality row with entries ``ref`` and ``cur``: by the direction
    (:func:`decide`), or, when ``declared`` says ``Judge.BEYOND_REFERENCE``, one-sided about the level
    (see the module doc; ``(None, note)`` when no level is recorded). ``paired``: as for :func:`decide`."""
    decision = decide(ref.stats, cur.stats, higher_is_better, tolerance, alpha, paired)
    if declared is None or declared.judge is not Judge.BEYOND_REFERENCE:
        return decision, ""
    level = cur.reference_level if cur.reference_level is not None else ref.reference_level
    if level is None:
        return None, NO_LEVEL
    floor = tolerance.floor(level)
    said = f"the level held-out data scores: {number(level)}, floor {number(floor)}"
    if decision.verdict is Verdict.WORSE:
        if _past(cur.mean, level, floor, higher_is_better):
            return decision, f"past the level ({said})"
        return replace(decision, verdict=Verdict.UNCHANGED), \
            f"moved the worse way but not past the level ({said})"
    if decision.verdict is Verdict.BETTER:
        if _past(ref.mean, level, floor, higher_is_better):
            return decision, f"was past the level ({said})"
        return replace(decision, verdict=Verdict.UNCHANGED), \
            f"moved the better way from a value not past the level ({said})"
    return decision, ""
