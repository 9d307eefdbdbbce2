"""The summarised run: one results directory as every report format reads it (the one input of a
:class:`~harness.report.formats.ReportFormatSpec`'s ``render``).

Each part is computed the first time a format asks for it and kept: the CSV reads only the tidy rows,
the terminal only the tables, and only a format that shows charts or sample panels pays for drawing
them (:class:`~harness.report.sections.Section`). The tables' best marks use the jobs' per-example
values where they were kept (``per_example``, the paired rule at ``alpha``), and ``matrices`` holds the
paired matrices of the likelihood columns (:mod:`harness.report.evidence`).
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Mapping, Optional

import pandas as pd

from harness.report import environment
from harness.report.evidence import REPORT_ALPHA, RunPerExample, matrices
from harness.report.summary import failures, skipped_jobs, skipped_metrics, summarise
from harness.report.tables import build_tables
from harness.jobs import JobStatus
from harness.store import RESULT_COLUMNS

TITLE = "harness results"


class SummarisedRun:
    """What a results directory holds, for reading.

    ``results``: the store's rows (one measurement, skip or failure a row); ``directory``: where its
    ``artifacts/`` are (saved samples and densities); ``outputs``: measurement name -> its declaration
    (:class:`harness.Output`), as the store recorded them; ``runs``: the store's runs (environment);
    ``source``: a :class:`harness.report.data.DatasetSource` for dataset declarations, test images and
    true densities (None: leave those out); ``meta``: lines about how the results were made, shown
    where the store records no run.
    """

    def __init__(self, results: pd.DataFrame, directory: Path, outputs: Optional[Mapping] = None,
                 runs: Optional[list] = None, source=None, title: str = TITLE, meta: Optional[dict] = None):
        self.results = results
        self.directory = Path(directory)
        self.outputs = dict(outputs or {})
        self.runs = list(runs or [])
        self.source = source
        self.title = title
        self.meta = dict(meta or {})
        self.alpha = REPORT_ALPHA  # the declared level of the paired comparisons
        self._tables: dict = {}

    @classmethod
    def read(cls, directory: Path, source=None, title: str = TITLE, meta: Optional[dict] = None) -> "SummarisedRun":
        """The run of a results directory, from its store. Declarations stored before outputs declared
        their role and scaling are completed from the installed metrics' (``source.host``)."""
        from harness.store import Store

        host = getattr(source, "host", None)
        known = ({name: out for name, (_, out) in host.registry.output_declarations().items()}
                 if host is not None else None)
        store = Store(directory, read_only=True)
        try:
            results, outputs, runs = store.results(), store.outputs(known), store.runs()
        finally:
            store.close()
        return cls(results, directory, outputs, runs, source, title, meta)

    # ------------------------------------------------------------------ rows and numbers
    @cached_property
    def tidy(self) -> pd.DataFrame:
        """The rows in the documented column order (results.csv, results.json)."""
        return self.results.reindex(columns=RESULT_COLUMNS)

    @cached_property
    def summary(self) -> pd.DataFrame:
        """Ok measurements aggregated over seeds (:func:`harness.report.summary.summarise`)."""
        return summarise(self.results)

    def tables(self, part: str = "all", variants: bool = False) -> dict:
        """dataset -> :class:`~harness.report.tables.Table` (``part``: quality, speed or all; ``variants``:
        the sampler-variant rows instead of the model's own)."""
        key = (part, variants)
        if key not in self._tables:
            self._tables[key] = build_tables(self.summary, self.outputs, part, variants=variants,
                                             per_example=self.per_example, alpha=self.alpha)
        return self._tables[key]

    @cached_property
    def per_example(self) -> RunPerExample:
        """The jobs' per-example values by (dataset, model, identity), over the seeds the summary used."""
        return RunPerExample(self.directory, self.summary)

    @cached_property
    def matrices(self) -> dict:
        """dataset -> the paired matrices of its likelihood columns
        (:class:`~harness.report.evidence.MatrixView`, one per column and estimator mark)."""
        return {dataset: found for dataset, table in self.tables("all").items() if (found := matrices(table))}

    # ------------------------------------------------------------------ what did not run
    @cached_property
    def failed(self) -> pd.DataFrame:
        """Failed jobs and metrics with their reasons (:func:`harness.report.summary.failures`)."""
        return failures(self.results)

    @cached_property
    def skipped(self) -> pd.DataFrame:
        """Pairs that did not run, with their reasons."""
        return skipped_jobs(self.results)

    @cached_property
    def not_applicable(self) -> pd.DataFrame:
        """Metrics that did not apply to a job that ran."""
        return skipped_metrics(self.results)

    @property
    def problem_count(self) -> int:
        return len(self.failed) + len(self.skipped)

    # ------------------------------------------------------------------ where it was made
    @cached_property
    def environment(self) -> list:
        """One ordered dict per run (:func:`harness.report.environment.run_rows`)."""
        return environment.run_rows(self.runs, self.results)

    @property
    def headline(self) -> str:
        """One line: run ids, profile, seeds, device (else the ``meta`` lines)."""
        return environment.headline(self.runs) or "; ".join(f"{k} {v}" for k, v in self.meta.items())

    # ------------------------------------------------------------------ per dataset
    @cached_property
    def sections(self) -> list:
        """One :class:`~harness.report.sections.Section` per dataset with a result, in name order."""
        from harness.report.sections import Section

        df = self.results
        datasets = sorted(set(df["dataset"].dropna().unique()) - {"-"}) if not df.empty else []
        shown = self.tables("all")
        varied = self.tables("all", variants=True)
        datasets = [d for d in datasets if d in shown or d in varied
                    or ((df["dataset"] == d) & (df["status"] == JobStatus.OK)).any()]
        return [Section(self, d) for d in datasets]

    @cached_property
    def sampling_labels(self) -> dict:
        """(dataset, model) -> the label of a model's own sampler setting."""
        from harness.report.variants import sampling_labels

        return sampling_labels(self.results)

    @cached_property
    def eval_examples(self) -> Optional[int]:
        """The size of the evaluation subset the run's metrics used (the reference panels show it)."""
        from harness.report.panels import eval_examples_of

        return eval_examples_of(self.results)
