"""The regression gate: summarise a results set into a baseline, and compare a results set with one.

By role: :mod:`~harness.regression.rule` (the decision: floor and one-sided test),
:mod:`~harness.regression.results` (reading results through the store, summarised as the report does),
:mod:`~harness.regression.speed` (the machine rule: how speed rows are compared across machines),
:mod:`~harness.regression.baseline` (baseline files), :mod:`~harness.regression.compare` (row by row
against a baseline) and :mod:`~harness.regression.render` (Markdown). docs/regression.md explains the
rule and the tolerances, which every metric declares with its outputs.
"""

from harness.regression.baseline import (BASELINE_FORMAT, REFRESH_COMMANDS, UNKNOWN_MACHINE, BaselineMismatch,
                                         baseline_entries, hparams_hash, make_baseline, merge_speed, read_baseline,
                                         section_entries, write_baseline)
from harness.regression.compare import (DISABLED, FAILING, NOT_COMPARED, NOT_INSTALLED, VERDICT_ORDER, Comparison,
                                        Row, check_match, compare, tolerance_for)
from harness.regression.render import render_baseline, render_markdown
from harness.regression.results import Entry, ResultsSet, load_results, summarise
from harness.regression.rule import DEFAULT_ALPHA, Decision, Stats, decide
from harness.regression.speed import (MACHINE_SPREAD, NORMALISED, SAME_MACHINE, SpeedPlan, plan_speed,
                                      results_machine, time_dependence)

__all__ = ["BASELINE_FORMAT", "REFRESH_COMMANDS", "UNKNOWN_MACHINE", "BaselineMismatch", "baseline_entries",
           "hparams_hash", "make_baseline", "merge_speed", "read_baseline", "section_entries", "write_baseline",
           "DISABLED", "FAILING", "NOT_COMPARED", "NOT_INSTALLED", "VERDICT_ORDER", "Comparison", "Row", "check_match",
           "compare", "tolerance_for", "render_baseline", "render_markdown", "Entry", "ResultsSet", "load_results",
           "summarise", "DEFAULT_ALPHA", "Decision", "Stats", "decide", "MACHINE_SPREAD", "NORMALISED",
           "SAME_MACHINE", "SpeedPlan", "plan_speed", "results_machine", "time_dependence"]
