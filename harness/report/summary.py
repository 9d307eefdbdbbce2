"""What the report says beside its tables: the column a measurement goes in, and the jobs and metrics
that failed or were skipped, with their reasons. The summary the tables read is
:func:`harness.summary.summarise` (re-exported here)."""

from __future__ import annotations

import pandas as pd

from harness.jobs import JobStatus
from harness.summary import SUMMARY_COLUMNS, summarise

__all__ = ["SUMMARY_COLUMNS", "summarise", "metric_label", "problems", "failures", "skipped_jobs", "skipped_metrics"]


def metric_label(row) -> str:
    """The column a measurement goes in: its identity (``fid@2000`` where the sample count is part of
    what the number means, else the name), plus its unit."""
    label = row.get("label") or row["metric"]
    unit = row.get("unit") or ""
    return f"{label} [{unit}]" if unit else label


def problems(df: pd.DataFrame) -> pd.DataFrame:
    """Failed jobs and metrics, and skipped pairs and metrics, with their reasons, one row each."""
    bad = df[df["status"].isin([JobStatus.FAILED, JobStatus.SKIPPED])]
    cols = ["status", "model", "dataset", "seed", "metric", "reason"]
    return bad[cols].drop_duplicates().sort_values(["status", "model", "dataset", "seed"]).reset_index(drop=True)


def _seeds(values) -> str:
    seeds = sorted({int(s) for s in values if pd.notna(s)})
    return ", ".join(map(str, seeds))


def failures(df: pd.DataFrame) -> pd.DataFrame:
    """Every failed job or metric with its reason: (model, dataset, metric or "" for the whole job,
    seeds, reason)."""
    bad = df[df["status"] == JobStatus.FAILED].copy()
    return _grouped(bad, ["model", "dataset", "metric", "reason"])


def skipped_jobs(df: pd.DataFrame) -> pd.DataFrame:
    """Pairs that did not run (incompatible, data missing), with the reason: (model, dataset, seeds, reason)."""
    bad = df[(df["status"] == JobStatus.SKIPPED) & df["metric"].isna()].copy()
    return _grouped(bad, ["model", "dataset", "reason"])


def skipped_metrics(df: pd.DataFrame) -> pd.DataFrame:
    """Metrics that did not apply to a job that ran: (dataset, metric, reason, models)."""
    bad = df[(df["status"] == JobStatus.SKIPPED) & df["metric"].notna()].copy()
    if bad.empty:
        return pd.DataFrame(columns=["dataset", "metric", "reason", "models"])
    bad["reason"] = bad["reason"].fillna("")
    rows = [dict(dataset=d, metric=m, reason=r, models=", ".join(sorted(set(g["model"]))))
            for (d, m, r), g in bad.groupby(["dataset", "metric", "reason"], sort=True)]
    return pd.DataFrame(rows, columns=["dataset", "metric", "reason", "models"])


def _grouped(bad: pd.DataFrame, keys: list) -> pd.DataFrame:
    columns = keys[:-1] + ["seeds", "reason"]
    if bad.empty:
        return pd.DataFrame(columns=columns)
    bad = bad.assign(**{k: bad[k].fillna("") for k in keys})
    rows = []
    for values, g in bad.groupby(keys, sort=True):
        row = dict(zip(keys, values))
        row["seeds"] = _seeds(g["seed"])
        rows.append(row)
    return pd.DataFrame(rows, columns=columns)
