"""Metric history across commits: every metric of every model as a curve over the project's history.

By role: :mod:`~harness.history.format` (the append-only history file), :mod:`~harness.history.records`
(a results directory read into records: the one place the history meets the results store),
:mod:`~harness.history.git` (what is asked of git), :mod:`~harness.history.series` (curves, split where
the protocol changes), :mod:`~harness.history.steps` (step detection), :mod:`~harness.history.regressions`
(the steps that made a metric worse), :mod:`~harness.history.charts` and :mod:`~harness.history.site`
(the static site), :mod:`~harness.history.commit_runs` and :mod:`~harness.history.bisect` (finding the
commit that changed a metric). The command is harness/commands/history.py; docs/regression.md
("Metric history") documents the file format and the workflow.
"""
