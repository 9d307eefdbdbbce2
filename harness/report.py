"""Reports: tidy results -> per-dataset comparison tables (models x metrics) with +- and the
estimator mark, as Markdown (report.md), CSV (results.csv) and HTML (report.html).

Cells aggregate over seeds: the mean, with the standard error across seeds when there are several
seeds and the measurement's own standard error when there is one. Every likelihood cell carries its
mark, so exact values, bounds and estimates are never read as one ranking by accident.
"""

from __future__ import annotations

import html
import math
import os
from pathlib import Path
from typing import Mapping, Optional

import pandas as pd

from harness.contracts import QUALITY, SPEED
from harness.formatting import value_with_error
from harness.store import RESULT_COLUMNS

MARKS = {"exact": "x", "bound": "b", "estimate": "e"}
LEGEND = ("Marks: (x) exact, (b) bound - a lower bound on log-likelihood, so the NLL shown is an upper bound, "
          "(e) stochastic estimate. Values are means over seeds +- standard error (across seeds when there are "
          "several, else the measurement's own); each column's direction is the metric's declaration.")

SUMMARY_COLUMNS = ["dataset", "model", "family", "metric", "label", "unit", "estimator", "mean", "stderr", "seeds",
                   "higher_is_better", "seed_list"]


def metric_label(row) -> str:
    """The column a measurement goes in: its identity (``fid@2000`` where the sample count is part of
    what the number means, else the name), plus its unit."""
    label = row.get("label") or row["metric"]
    unit = row.get("unit") or ""
    return f"{label} [{unit}]" if unit else label


def summarise(df: pd.DataFrame) -> pd.DataFrame:
    """Aggregate ok measurements over seeds: one row per (dataset, model, metric identity).

    The mean over seeds, with the standard error across seeds when there are several seeds and the
    measurement's own standard error when there is one. Units or estimators that differ between seeds
    (results of different code in one directory) are joined with `` | `` so they show. A measurement made
    again for the same seed (``run --resume`` with another metric selection measures a model again under a
    new job) counts once: the newest. The report tables and the regression gate both read this summary."""
    ok = df[(df["status"] == "ok") & df["metric"].notna()].copy()
    if ok.empty:
        return pd.DataFrame(columns=SUMMARY_COLUMNS)
    ok["label"] = ok["id"].fillna(ok["metric"]) if "id" in ok else ok["metric"]
    if "finished" in ok:
        same = [c for c in ("dataset", "model", "label", "seed", "profile") if c in ok]
        ok = ok.sort_values("finished", kind="stable").drop_duplicates(same, keep="last")
    ok["unit"] = ok["unit"].fillna("")
    ok["estimator"] = ok["estimator"].fillna("")
    ok["family"] = ok["family"].fillna("") if "family" in ok else ""
    rows = []
    for (dataset, model, label), g in ok.groupby(["dataset", "model", "label"], sort=True):
        values = g["value"].astype(float)
        k = len(values)
        if k > 1:
            stderr = float(values.std(ddof=1) / math.sqrt(k))
        else:
            stderr = float(g["stderr"].iloc[0]) if pd.notna(g["stderr"].iloc[0]) else math.nan
        hib = g["higher_is_better"].dropna() if "higher_is_better" in g else pd.Series(dtype=float)
        rows.append(dict(dataset=dataset, model=model, family=_joined(g["family"]), metric=str(g["metric"].iloc[0]),
                         label=label, unit=_joined(g["unit"]), estimator=_joined(g["estimator"]),
                         mean=float(values.mean()), stderr=stderr, seeds=k,
                         higher_is_better=bool(hib.iloc[0]) if len(hib) else None,
                         seed_list=sorted(int(s) for s in g["seed"])))
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)


def _joined(values) -> str:
    return " | ".join(sorted({str(v) for v in values if isinstance(v, str)}))


def _kind(metric: str, estimator: str, outputs: Mapping) -> str:
    """quality or speed: the declaration's kind; an undeclared measurement is speed when measured."""
    out = outputs.get(metric)
    if out is not None:
        return out.kind
    return SPEED if estimator == "measured" else QUALITY


def _cell(mean: float, stderr: float, estimator: str, integer: bool) -> str:
    text = value_with_error(mean, stderr, integer)
    mark = MARKS.get(estimator)
    return f"{text} ({mark})" if mark else text


def comparison_tables(df: pd.DataFrame, part: str = "all", outputs: Optional[Mapping] = None) -> dict:
    """dataset -> DataFrame (index model, columns metric labels, cells formatted strings).

    ``part``: ``quality`` (likelihoods and sample statistics), ``speed`` (timings and resource
    figures) or ``all``, by each output's declared kind. ``outputs``: measurement name ->
    :class:`harness.contracts.Output` (from the store or the registry): kind, column order, integers.
    """
    outputs = outputs or {}
    summary = summarise(df)
    if part in (QUALITY, SPEED):
        keep = pd.Series([_kind(m, e, outputs) == part for m, e in zip(summary["metric"], summary["estimator"])],
                         index=summary.index, dtype=bool)
        summary = summary[keep]
    tables = {}
    for dataset, g in summary.groupby("dataset", sort=True):
        g = g.copy()
        g["column"] = [metric_label(r) for _, r in g.iterrows()]
        g["cell"] = [_cell(r["mean"], r["stderr"], r["estimator"], getattr(outputs.get(r["metric"]), "integer", False))
                     for _, r in g.iterrows()]
        order = {c: (getattr(outputs.get(m), "order", 1000), c) for c, m in zip(g["column"], g["metric"])}
        table = g.pivot_table(index="model", columns="column", values="cell", aggfunc="first")
        table = table.reindex(columns=sorted(table.columns, key=order.get)).fillna("")
        table.columns.name = None
        tables[dataset] = table
    return tables


def problems(df: pd.DataFrame) -> pd.DataFrame:
    """Failed jobs and metrics, and skipped pairs, with their reasons."""
    bad = df[df["status"].isin(["failed", "skipped"])]
    cols = ["status", "model", "dataset", "seed", "metric", "reason"]
    return bad[cols].drop_duplicates().sort_values(["status", "model", "dataset", "seed"]).reset_index(drop=True)


def markdown_report(df: pd.DataFrame, title: str = "harness results", meta: dict | None = None,
                    outputs: Optional[Mapping] = None) -> str:
    lines = [f"# {title}", ""]
    if meta:
        for k, v in meta.items():
            lines.append(f"- {k}: {v}")
        lines.append("")
    quality, speed = comparison_tables(df, QUALITY, outputs), comparison_tables(df, SPEED, outputs)
    for dataset in sorted(set(quality) | set(speed)):
        lines += [f"## {dataset}", ""]
        if dataset in quality:
            lines += [quality[dataset].to_markdown(), ""]
        if dataset in speed:
            lines += [f"Speed on {dataset}:", "", speed[dataset].to_markdown(), ""]
    lines += [LEGEND, ""]
    bad = problems(df)
    if not bad.empty:
        lines += ["## Failed and skipped", "", bad.fillna("").to_markdown(index=False), ""]
    return "\n".join(lines)


def html_report(df: pd.DataFrame, title: str = "harness results", outputs: Optional[Mapping] = None) -> str:
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
             "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}</style></head><body>",
             f"<h1>{html.escape(title)}</h1>"]
    quality, speed = comparison_tables(df, QUALITY, outputs), comparison_tables(df, SPEED, outputs)
    for dataset in sorted(set(quality) | set(speed)):
        parts.append(f"<h2>{html.escape(str(dataset))}</h2>")
        if dataset in quality:
            parts.append(quality[dataset].to_html(escape=True))
        if dataset in speed:
            parts += [f"<h3>Speed on {html.escape(str(dataset))}</h3>", speed[dataset].to_html(escape=True)]
    parts.append(f"<p>{html.escape(LEGEND)}</p>")
    bad = problems(df)
    if not bad.empty:
        parts += ["<h2>Failed and skipped</h2>", bad.fillna("").to_html(index=False, escape=True)]
    parts.append("</body></html>")
    return "\n".join(parts)


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_reports(df: pd.DataFrame, out: Path, meta: dict | None = None, outputs: Optional[Mapping] = None) -> dict:
    """Write results.csv, results.json, report.md and report.html into ``out`` (atomically)."""
    out = Path(out)
    paths = {"csv": out / "results.csv", "json": out / "results.json", "markdown": out / "report.md",
             "html": out / "report.html"}
    tidy = df.reindex(columns=RESULT_COLUMNS)
    _atomic_write(paths["csv"], tidy.to_csv(index=False))
    _atomic_write(paths["json"], tidy.to_json(orient="records", indent=1))
    _atomic_write(paths["markdown"], markdown_report(df, meta=meta, outputs=outputs))
    _atomic_write(paths["html"], html_report(df, outputs=outputs))
    return paths
