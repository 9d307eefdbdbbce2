"""The verdicts a comparison gives a row (one vocabulary for ``compare`` and ``report A B``)."""

from __future__ import annotations

from enum import Enum


class Verdict(str, Enum):
    """What became of one (model, dataset, metric identity) between a reference and a current result set.

    The engine (:func:`harness.comparison.compare_sides`) gives WORSE, BETTER, UNCHANGED, CHANGED,
    NOT_COMPARED, MISSING and NEW; the regression gate adds FAILED and NOT_INSTALLED for its baseline's
    rows. ``report A B`` names MISSING "only in A", NEW "only in B", CHANGED and NOT_COMPARED "not
    comparable" (:mod:`harness.report.pair`)."""

    WORSE = "worse"  # moved the wrong way beyond its floor and the seeds' noise
    BETTER = "better"
    UNCHANGED = "unchanged"
    CHANGED = "changed"  # not comparable: its unit, estimator, direction or declaration changed, or its data differ
    NOT_COMPARED = "not-compared"  # a speed row the machine rule cannot compare
    MISSING = "missing"  # only in the reference
    NEW = "new"  # only in the current results
    FAILED = "failed"  # the gate: its job or metric failed in the current results
    NOT_INSTALLED = "not-installed"  # the gate: the plugin that registered it is not installed

    def __str__(self) -> str:
        return self.value
