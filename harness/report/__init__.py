"""Reports: from a results directory's store to what people read.

By role:

- :mod:`~harness.report.summary`: failures and skips with their reasons, beside
  :func:`harness.summary.summarise` (ok measurements aggregated over seeds, which the comparison reads too);
- :mod:`~harness.report.tables`: per-dataset tables as data, best per column marked;
- :mod:`~harness.report.roles`: which measurements the charts and the terminal show, from declarations;
- :mod:`~harness.report.panels`, :mod:`~harness.report.charts`, :mod:`~harness.report.images`: sample
  grids, density panels and charts (matplotlib, Agg) as inline images;
- :mod:`~harness.report.summarised`: the summarised run, the one input of every report format, and
  :mod:`~harness.report.sections`, its per-dataset sections;
- :mod:`~harness.report.formats`: the report-format contract (registered by plugins) and writing the
  formats every run writes; :mod:`~harness.report.html`, :mod:`~harness.report.markdown`,
  :mod:`~harness.report.latex`, :mod:`~harness.report.terminal` are the renderers the built-in
  formats register;
- :mod:`~harness.report.pair`: two runs side by side, each cell decided by :mod:`harness.comparison`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Optional

import pandas as pd

from harness.contracts import split_variant
from harness.report.formats import ReportFormatSpec, atomic_write, write_every_run
from harness.report.summarised import TITLE, SummarisedRun
from harness.report.summary import SUMMARY_COLUMNS, metric_label, problems, summarise
from harness.report.tables import LEGEND, MARKS, build_tables, comparison_tables

__all__ = ["SUMMARY_COLUMNS", "LEGEND", "MARKS", "metric_label", "problems", "split_variant", "summarise",
           "build_tables", "comparison_tables", "write_reports", "atomic_write", "ReportFormatSpec",
           "SummarisedRun"]


def write_reports(df: pd.DataFrame, out: Path, meta: Optional[dict] = None, outputs: Optional[Mapping] = None,
                  runs: Optional[list] = None, source=None, directory: Optional[Path] = None,
                  title: str = TITLE, formats: Optional[Mapping] = None) -> dict:
    """Write every report format declared ``every_run`` (results.csv, results.json, report.md,
    report.html and whatever plugins add) into ``out``, each atomically; format name -> path.

    ``runs``: the store's runs (environment section); ``source``: a
    :class:`harness.report.data.DatasetSource` for entropies, test images and true densities;
    ``directory``: the results directory whose ``artifacts/`` hold the saved samples (default ``out``);
    ``formats``: name -> :class:`ReportFormatSpec` (default: those of the installed plugins)."""
    if formats is None:
        from harness.host import get_host

        formats = (source.host if source is not None else get_host()).registry.report_formats
    run = SummarisedRun(df, Path(directory or out), outputs, runs, source, title, meta)
    return write_every_run(run, formats, out)
