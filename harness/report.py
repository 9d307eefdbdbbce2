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

import pandas as pd

from harness.store import RESULT_COLUMNS

MARKS = {"exact": "x", "bound": "b", "estimate": "e"}
LEGEND = ("Marks: (x) exact, (b) bound - a lower bound on log-likelihood, so the NLL shown is an upper bound, "
          "(e) stochastic estimate. Values are means over seeds +- standard error; lower is better for "
          "nll/bpd/nll_gap/fid/kid, higher for throughput, precision, recall.")


def metric_label(row) -> str:
    """The column a measurement goes in: metric name, plus its sample count when that is part of the
    metric's identity (``details['id']``, e.g. ``fid@2000``), plus its unit."""
    label = row.get("label") or row["metric"]
    unit = row.get("unit") or ""
    return f"{label} [{unit}]" if unit else label


def metric_identity(details, metric: str) -> str:
    """A measurement's identity: ``details['id']`` when the metric sets one (e.g. ``fid@2000``, where
    the sample count is part of what the number means), otherwise the metric name."""
    import json

    if isinstance(details, str) and details:
        try:
            ident = json.loads(details).get("id")
        except (ValueError, AttributeError):
            ident = None
        if ident:
            return str(ident)
    return metric


def summarise(df: pd.DataFrame) -> pd.DataFrame:
    """Aggregate ok measurements over seeds: one row per (dataset, model, metric identity)."""
    ok = df[(df["status"] == "ok") & df["metric"].notna()].copy()
    if ok.empty:
        return pd.DataFrame(columns=["dataset", "model", "family", "label", "unit", "estimator", "mean", "stderr",
                                     "seeds", "higher_is_better"])
    ok["label"] = [metric_identity(d, m) for d, m in zip(ok.get("details", [""] * len(ok)), ok["metric"])]
    groups = ok.groupby(["dataset", "model", "family", "label", "unit", "estimator"], dropna=False, sort=True)
    rows = []
    for (dataset, model, family, label, unit, estimator), g in groups:
        values = g["value"].astype(float)
        k = len(values)
        if k > 1:
            stderr = float(values.std(ddof=1) / math.sqrt(k))
        else:
            stderr = float(g["stderr"].iloc[0]) if pd.notna(g["stderr"].iloc[0]) else math.nan
        rows.append(dict(dataset=dataset, model=model, family=family, label=label, unit=unit, estimator=estimator,
                         mean=float(values.mean()), stderr=stderr, seeds=k,
                         higher_is_better=bool(g["higher_is_better"].iloc[0]) if "higher_is_better" in g else None))
    return pd.DataFrame(rows)


def _fmt(value: float, stderr: float, estimator: str) -> str:
    def num(v):
        if v == 0 or not math.isfinite(v):
            return f"{v:g}"
        a = abs(v)
        if a >= 1e5 or a < 1e-3:
            return f"{v:.3e}"
        return f"{v:.4g}" if a >= 100 else f"{v:.4f}" if a < 1 else f"{v:.3f}"

    text = num(value)
    if stderr is not None and math.isfinite(stderr) and stderr > 0:
        text += f" ± {num(stderr)}"
    mark = MARKS.get(estimator)
    return f"{text} ({mark})" if mark else text


def comparison_tables(df: pd.DataFrame, part: str = "all") -> dict:
    """dataset -> DataFrame (index model, columns metric labels, cells formatted strings).

    ``part``: ``quality`` (likelihoods and sample statistics), ``speed`` (timings and resource
    figures, estimator ``measured``) or ``all``.
    """
    summary = summarise(df)
    if part == "quality":
        summary = summary[summary["estimator"] != "measured"]
    elif part == "speed":
        summary = summary[summary["estimator"] == "measured"]
    tables = {}
    for dataset, g in summary.groupby("dataset", sort=True):
        g = g.copy()
        g["column"] = [metric_label(r) for _, r in g.iterrows()]
        g["cell"] = [_fmt(r["mean"], r["stderr"], r["estimator"]) for _, r in g.iterrows()]
        table = g.pivot_table(index="model", columns="column", values="cell", aggfunc="first")
        table = table.reindex(columns=sorted(table.columns, key=_column_order)).fillna("")
        table.columns.name = None
        tables[dataset] = table
    return tables


_ORDER = ["nll", "bpd", "nll_gap", "elbo_nll", "parzen_nll", "fid", "kid", "precision", "recall"]


def _column_order(label: str):
    base = label.split(" ")[0].split("@")[0]
    return (_ORDER.index(base) if base in _ORDER else len(_ORDER), label)


def problems(df: pd.DataFrame) -> pd.DataFrame:
    """Failed jobs and metrics, and skipped pairs, with their reasons."""
    bad = df[df["status"].isin(["failed", "skipped"])]
    cols = ["status", "model", "dataset", "seed", "metric", "reason"]
    return bad[cols].drop_duplicates().sort_values(["status", "model", "dataset", "seed"]).reset_index(drop=True)


def markdown_report(df: pd.DataFrame, title: str = "harness results", meta: dict | None = None) -> str:
    lines = [f"# {title}", ""]
    if meta:
        for k, v in meta.items():
            lines.append(f"- {k}: {v}")
        lines.append("")
    quality, speed = comparison_tables(df, "quality"), comparison_tables(df, "speed")
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


def html_report(df: pd.DataFrame, title: str = "harness results") -> str:
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
             "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}</style></head><body>",
             f"<h1>{html.escape(title)}</h1>"]
    quality, speed = comparison_tables(df, "quality"), comparison_tables(df, "speed")
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


def write_reports(df: pd.DataFrame, out: Path, meta: dict | None = None) -> dict:
    """Write results.csv, results.json, report.md and report.html into ``out`` (atomically)."""
    out = Path(out)
    paths = {"csv": out / "results.csv", "json": out / "results.json", "markdown": out / "report.md",
             "html": out / "report.html"}
    tidy = df.reindex(columns=RESULT_COLUMNS)
    _atomic_write(paths["csv"], tidy.to_csv(index=False))
    _atomic_write(paths["json"], tidy.to_json(orient="records", indent=1))
    _atomic_write(paths["markdown"], markdown_report(df, meta=meta))
    _atomic_write(paths["html"], html_report(df))
    return paths
