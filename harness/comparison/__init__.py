"""The comparison of two summarised result sets: one engine for ``compare`` (results against a baseline)
and ``report A B`` (a run against a run), which differ only in how they build the two sides and how
they render the rows.

By role: :mod:`~harness.comparison.results` (a result set read from a directory or a CSV, and its
summary per model, dataset and metric identity), :mod:`~harness.comparison.verdicts` (the verdicts),
:mod:`~harness.comparison.rule` (the decision: floor and one-sided test),
:mod:`~harness.comparison.machines` (the machine rule for speed rows),
:mod:`~harness.comparison.measured` (which machine measured each job and row, and the plans built from them) and
:mod:`~harness.comparison.engine` (rows matched by identity, checked, decided). docs/regression.md
explains the rule; docs/plugins.md what a metric's declaration decides here.
"""

from harness.comparison.engine import (UNDECLARED_TOLERANCE, RowComparison, Side, compare_sides, declaration,
                                       is_speed, tolerance_for)
from harness.comparison.machines import (MACHINE_SPREAD, MachinePlans, MachineSide, SpeedMode, SpeedPlan,
                                         WhyNotCompared, plan_speed)
from harness.comparison.measured import plan_pair, plan_results, results_machine, row_machines
from harness.comparison.results import Entry, ResultsSet, load_results, summarise
from harness.comparison.rule import DEFAULT_ALPHA, Decision, SignificanceTest, Stats, decide
from harness.comparison.verdicts import Verdict

__all__ = ["UNDECLARED_TOLERANCE", "RowComparison", "Side", "compare_sides", "declaration", "is_speed",
           "tolerance_for", "MACHINE_SPREAD", "MachinePlans", "MachineSide", "SpeedMode", "SpeedPlan", "WhyNotCompared",
           "plan_speed", "plan_pair", "plan_results", "results_machine", "row_machines", "Entry", "ResultsSet",
           "load_results", "summarise", "DEFAULT_ALPHA", "Decision", "SignificanceTest", "Stats", "decide", "Verdict"]
