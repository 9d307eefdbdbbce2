"""Reports: tidy results -> per-dataset comparison tables (models x metrics) with +- and the
estimator mark, as Markdown (report.md), CSV (results.csv) and HTML (report.html).

Cells aggregate over seeds: the mean, with the standard error across seeds when there are several
seeds and the measurement's own standard error when there is one. Every likelihood cell carries its
mark, so exact values, bounds and estimates are never read as one ranking by accident.
"""

from __future__ import annotations

import html
import json
import math
import os
import re
from pathlib import Path
from typing import Mapping, Optional

import pandas as pd

from harness.contracts import QUALITY, SPEED, split_variant
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
    (results of different code in one directory) are joined with `` | `` so they show. The report
    tables and the regression gate both read this summary."""
    ok = df[(df["status"] == "ok") & df["metric"].notna()].copy()
    if ok.empty:
        return pd.DataFrame(columns=SUMMARY_COLUMNS)
    ok["label"] = ok["id"].fillna(ok["metric"]) if "id" in ok else ok["metric"]
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
    own = pd.Series([split_variant(label)[1] is None for label in summary["label"]], index=summary.index, dtype=bool)
    summary = summary[own]  # sampling variants have their own tables (variant_tables)
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


OWN_SETTING = "as fitted"


def _sampling_labels(df: pd.DataFrame) -> dict:
    """(dataset, model) -> the label a model gives its own sampler setting (job details ``sampling_label``)."""
    labels = {}
    if "job_details" not in df:
        return labels
    for (dataset, model, raw) in df[["dataset", "model", "job_details"]].drop_duplicates().itertuples(index=False):
        try:
            label = json.loads(raw).get("sampling_label") if isinstance(raw, str) else None
        except ValueError:
            label = None
        if label:
            labels[(dataset, model)] = label
    return labels


def _natural(text: str) -> list:
    """Sort key that orders ``steps=2`` before ``steps=10``."""
    return [(0, int(t), "") if t.isdigit() else (1, 0, t) for t in re.split(r"(\d+)", text)]


def variant_tables(df: pd.DataFrame, outputs: Optional[Mapping] = None) -> dict:
    """dataset -> DataFrame of sampling variants (:meth:`harness.Model.sampling_variants`): for each model
    measured with variants, one row per sampler setting -- its own (labelled with the model's
    ``sampling_label`` and ``(as fitted)``) and each variant -- and a column per measurement taken for
    the variants (quality, then speed, in declaration order). Variant rows are identified by the
    ``[label]`` suffix of their identity and kept out of :func:`comparison_tables`."""
    outputs = outputs or {}
    summary = summarise(df)
    if summary.empty:
        return {}
    parts = [split_variant(label) for label in summary["label"]]
    summary = summary.assign(base=[b for b, _ in parts], variant=[v for _, v in parts])
    varied = summary[summary["variant"].notna()]
    labels = _sampling_labels(df)
    tables = {}
    for dataset, g in varied.groupby("dataset", sort=True):
        own = summary[(summary["dataset"] == dataset) & summary["model"].isin(set(g["model"]))
                      & summary["variant"].isna() & summary["base"].isin(set(g["base"]))].copy()
        own["variant"] = [f"{labels[(dataset, m)]} ({OWN_SETTING})" if (dataset, m) in labels else f"({OWN_SETTING})"
                          for m in own["model"]]
        rows = pd.concat([own, g]).copy()
        rows["label"] = rows["base"]
        rows["column"] = [metric_label(r) for _, r in rows.iterrows()]
        rows["cell"] = [_cell(r["mean"], r["stderr"], r["estimator"],
                              getattr(outputs.get(r["metric"]), "integer", False)) for _, r in rows.iterrows()]
        order = {c: (_kind(m, e, outputs) != QUALITY, getattr(outputs.get(m), "order", 1000), c)
                 for c, m, e in zip(rows["column"], rows["metric"], rows["estimator"])}
        table = rows.pivot_table(index=["model", "variant"], columns="column", values="cell", aggfunc="first")
        table = table.reindex(columns=sorted(table.columns, key=order.get)).fillna("")
        index = sorted(table.index, key=lambda mv: (mv[0], _natural(mv[1].replace(f"({OWN_SETTING})", "").strip())))
        table = table.reindex(index)
        table.index.names = ["model", "sampling"]
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
    variants = variant_tables(df, outputs)
    for dataset in sorted(set(quality) | set(speed) | set(variants)):
        lines += [f"## {dataset}", ""]
        if dataset in quality:
            lines += [quality[dataset].to_markdown(), ""]
        if dataset in speed:
            lines += [f"Speed on {dataset}:", "", speed[dataset].to_markdown(), ""]
        if dataset in variants:
            lines += [f"Sampling variants on {dataset} (one fitted model, several sampler settings):", "",
                      variants[dataset].reset_index().to_markdown(index=False), ""]
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
    variants = variant_tables(df, outputs)
    for dataset in sorted(set(quality) | set(speed) | set(variants)):
        parts.append(f"<h2>{html.escape(str(dataset))}</h2>")
        if dataset in quality:
            parts.append(quality[dataset].to_html(escape=True))
        if dataset in speed:
            parts += [f"<h3>Speed on {html.escape(str(dataset))}</h3>", speed[dataset].to_html(escape=True)]
        if dataset in variants:
            parts += [f"<h3>Sampling variants on {html.escape(str(dataset))}</h3>",
                      variants[dataset].reset_index().to_html(index=False, escape=True)]
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
