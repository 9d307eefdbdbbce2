"""The regression gate: summarise a results set into a baseline, and compare a results set with one.

By role: :mod:`~harness.regression.baseline` (baseline files), :mod:`~harness.regression.speed` (a
baseline's speed sections under the machine rule), :mod:`~harness.regression.compare` (the results
against a baseline, through the comparison engine of :mod:`harness.comparison`, with the rows only a
baseline has) and :mod:`~harness.regression.render` (Markdown). docs/regression.md explains the rule
and the tolerances, which every metric declares with its outputs.
"""

from harness.comparison import (DEFAULT_ALPHA, MACHINE_SPREAD, Decision, Entry, ResultsSet, RowComparison, SpeedMode,
                                SpeedPlan, Stats, Verdict, decide, load_results, results_machine, summarise,
                                tolerance_for)
from harness.regression.baseline import (BASELINE_FORMAT, REFRESH_COMMANDS, UNKNOWN_MACHINE, BaselineMismatch,
                                         baseline_entries, baseline_source, check_match, hparams_hash, make_baseline, merge_speed,
                                         read_baseline, section_entries, write_baseline)
from harness.regression.compare import DISABLED, FAILING, VERDICT_ORDER, Comparison, compare
from harness.regression.render import render_baseline, render_markdown
from harness.regression.speed import plan_for

__all__ = ["BASELINE_FORMAT", "REFRESH_COMMANDS", "UNKNOWN_MACHINE", "BaselineMismatch", "baseline_entries", "baseline_source",
           "check_match", "hparams_hash", "make_baseline", "merge_speed", "read_baseline", "section_entries",
           "write_baseline", "DISABLED", "FAILING", "VERDICT_ORDER", "Comparison", "compare", "render_baseline",
           "render_markdown", "plan_for", "DEFAULT_ALPHA", "MACHINE_SPREAD", "Decision", "Entry", "ResultsSet",
           "RowComparison", "SpeedMode", "SpeedPlan", "Stats", "Verdict", "decide", "load_results", "results_machine",
           "summarise", "tolerance_for"]
