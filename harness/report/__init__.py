"""Reports: from a results directory's store to what people read.

By role:

- :mod:`~harness.report.summary`: failures and skips with their reasons, beside
  :func:`harness.summary.summarise` (ok measurements aggregated over seeds, which the comparison reads too);
- :mod:`~harness.report.tables`: per-dataset tables as data, best per column marked;
- :mod:`~harness.report.roles`: which measurements the charts and the terminal show, from declarations;
- :mod:`~harness.report.panels`, :mod:`~harness.report.charts`, :mod:`~harness.report.images`: sample
  grids, density panels and charts (matplotlib, Agg) as inline images;
- :mod:`~harness.report.sections`: the report as data; :mod:`~harness.report.html`,
  :mod:`~harness.report.markdown`, :mod:`~harness.report.latex`, :mod:`~harness.report.terminal` render it;
- :mod:`~harness.report.pair`: two runs side by side, each cell decided by :mod:`harness.comparison`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping, Optional

import pandas as pd

from harness.contracts import split_variant
from harness.report.summary import SUMMARY_COLUMNS, metric_label, problems, summarise
from harness.report.tables import LEGEND, MARKS, build_tables, comparison_tables
from harness.store import RESULT_COLUMNS

__all__ = ["SUMMARY_COLUMNS", "LEGEND", "MARKS", "metric_label", "problems", "split_variant", "summarise",
           "build_tables", "comparison_tables", "write_reports", "atomic_write", "REPORT_FILES"]

REPORT_FILES = {"csv": "results.csv", "json": "results.json", "markdown": "report.md", "html": "report.html"}


def atomic_write(path: Path, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write_reports(df: pd.DataFrame, out: Path, meta: Optional[dict] = None, outputs: Optional[Mapping] = None,
                  runs: Optional[list] = None, source=None, directory: Optional[Path] = None,
                  title: str = "harness results") -> dict:
    """Write results.csv, results.json, report.md and report.html into ``out`` (each atomically).

    ``runs``: the store's runs (environment section); ``source``: a
    :class:`harness.report.data.DatasetSource` for entropies, test images and true densities;
    ``directory``: the results directory whose ``artifacts/`` hold the saved samples (default ``out``)."""
    from harness.report.html import html_page
    from harness.report.markdown import markdown_page
    from harness.report.sections import build_report

    out = Path(out)
    paths = {k: out / name for k, name in REPORT_FILES.items()}
    report = build_report(df, Path(directory or out), outputs, runs, source, title, meta)
    tidy = df.reindex(columns=RESULT_COLUMNS)
    atomic_write(paths["csv"], tidy.to_csv(index=False))
    atomic_write(paths["json"], tidy.to_json(orient="records", indent=1))
    atomic_write(paths["markdown"], markdown_page(report))
    atomic_write(paths["html"], html_page(report))
    return paths
