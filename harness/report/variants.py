"""Sampler settings as rows: one fitted model measured at several settings of its sampler
(:meth:`harness.Model.sampling_variants`, identities ``fid@2000[steps=10]``) turned into a table with a
row per (model, setting) and a column per measurement, so a steps sweep reads down a column. The
model's own rows join as the setting it was fitted with (job details ``sampling_label``)."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from typing import Optional

import pandas as pd

from harness.contracts import split_variant
from harness.report.tables import Cell, Table, mark_best

OWN_SETTING = "as fitted"


def sampling_labels(df: pd.DataFrame) -> dict:
    """(dataset, model) -> the label a model gives its own sampler setting (job details ``sampling_label``)."""
    labels: dict = {}
    if df.empty or "job_details" not in df:
        return labels
    for dataset, model, raw in df[["dataset", "model", "job_details"]].drop_duplicates().itertuples(index=False):
        try:
            label = json.loads(raw).get("sampling_label") if isinstance(raw, str) and raw else None
        except (ValueError, AttributeError):
            label = None
        if label:
            labels[(dataset, model)] = str(label)
    return labels


def _natural(text: str) -> list:
    """Sort key that puts ``steps=2`` before ``steps=10``."""
    return [(0, int(t), "") if t.isdigit() else (1, 0, t) for t in re.split(r"(\d+)", text)]


def settings_table(variants: Table, own: Optional[Table] = None, labels: Optional[dict] = None) -> Table:
    """Rows ``model · setting`` (settings in natural order, the fitted one marked ``(as fitted)``),
    columns the variants' measurements without the setting suffix; best cells marked per column."""
    labels = labels or {}
    columns: dict = {}
    cells: dict = {}
    rows: dict = {}  # model -> {setting: row label}
    for col in variants.columns:
        base, setting = split_variant(col.label)
        if base not in columns:
            columns[base] = replace(col, label=base)
        for model in variants.models:
            cell = variants.cell(model, col.label)
            if cell is None:
                continue
            row = f"{model} · {setting}"
            rows.setdefault(model, {})[setting] = row
            cells[(row, base)] = Cell(cell.mean, cell.stderr, cell.estimator, cell.seeds, list(cell.seed_values))
    if own is not None:
        for model in list(rows):
            setting = labels.get((variants.dataset, model))
            name = f"{setting} ({OWN_SETTING})" if setting else f"({OWN_SETTING})"
            row = f"{model} · {name}"
            for base in columns:
                cell = own.cell(model, base)
                if cell is not None:
                    rows[model][setting or ""] = row
                    cells[(row, base)] = Cell(cell.mean, cell.stderr, cell.estimator, cell.seeds,
                                              list(cell.seed_values))
    ordered_rows = [rows[m][s] for m in sorted(rows) for s in sorted(rows[m], key=_natural)]
    table = Table(variants.dataset, variants.part, ordered_rows,
                  sorted(columns.values(), key=lambda c: (c.order, c.label)), cells)
    mark_best(table)
    return table
