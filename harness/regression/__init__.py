"""The regression gate: summarise a results set into a baseline, and compare a results set with one.

By role: :mod:`~harness.regression.rule` (the decision: floor and one-sided test),
:mod:`~harness.regression.results` (reading results through the store, summarised as the report does),
:mod:`~harness.regression.baseline` (baseline files), :mod:`~harness.regression.compare` (row by row
against a baseline) and :mod:`~harness.regression.render` (Markdown). docs/regression.md explains the
rule and the tolerances, which every metric declares with its outputs.
"""

from harness.regression.baseline import (BASELINE_FORMAT, REFRESH_COMMANDS, BaselineMismatch, baseline_entries,
                                         hparams_hash, make_baseline, read_baseline, write_baseline)
from harness.regression.compare import (FAILING, VERDICT_ORDER, Comparison, Row, check_match, compare,
                                        tolerance_for)
from harness.regression.render import render_baseline, render_markdown
from harness.regression.results import Entry, ResultsSet, load_results, summarise
from harness.regression.rule import DEFAULT_ALPHA, Decision, Stats, decide

__all__ = ["BASELINE_FORMAT", "REFRESH_COMMANDS", "BaselineMismatch", "baseline_entries", "hparams_hash",
           "make_baseline", "read_baseline", "write_baseline", "FAILING", "VERDICT_ORDER", "Comparison", "Row",
           "check_match", "compare", "tolerance_for", "render_baseline", "render_markdown", "Entry", "ResultsSet",
           "load_results", "summarise", "DEFAULT_ALPHA", "Decision", "Stats", "decide"]
