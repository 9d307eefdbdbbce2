"""A results directory's report as data: one section per dataset (tables, charts, sample panels), the
environment and what failed or was skipped. The Markdown and HTML renderers read this; nothing here
formats text for a particular output."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Optional

import pandas as pd

from harness.contracts import QUALITY, SPEED, Role
from harness.report import charts, roles
from harness.report.images import Image
from harness.report.summary import summarise
from harness.report.tables import Table, build_tables
from harness.report.variants import sampling_labels, settings_table

log = logging.getLogger(__name__)


@dataclass
class Chart:
    title: str
    image: Optional[Image] = None
    note: str = ""  # why there is no chart, or what to read from it


@dataclass
class Section:
    dataset: str
    description: str = ""
    quality: Optional[Table] = None
    speed: Optional[Table] = None
    variants: Optional[Table] = None
    panels: list = field(default_factory=list)
    panel_note: str = ""
    charts: list = field(default_factory=list)


@dataclass
class Report:
    title: str
    sections: list
    runs: list
    failed: pd.DataFrame  # failed jobs and metrics (summary.failures)
    skipped: pd.DataFrame  # pairs that did not run (summary.skipped_jobs)
    not_applicable: pd.DataFrame  # metrics that did not apply to a job (summary.skipped_metrics)
    meta: dict = field(default_factory=dict)

    @property
    def problem_count(self) -> int:
        return len(self.failed) + len(self.skipped)


def describe(spec) -> str:
    """One line about a dataset: kind, shape, classes, entropy."""
    if spec is None:
        return ""
    kind = spec.kind.value + (f" ({spec.levels} levels)" if spec.levels and spec.kind.value != "binary" else "")
    parts = [kind, "shape " + "x".join(map(str, spec.event_shape))]
    if spec.num_classes:
        parts.append(f"{spec.num_classes} classes")
    if spec.entropy is not None:
        parts.append(f"true entropy {spec.entropy:.4f} nats")
    return ", ".join(parts)


def _point(table: Table, model: str, label: str) -> Optional[charts.Point]:
    c = table.cell(model, label)
    return None if c is None else charts.Point(model, c.mean, c.stderr, c.estimator, label)


def dataset_charts(dataset: str, table: Table, spec=None) -> list:
    """The likelihood, quality-vs-speed and seed-spread charts of one dataset ("all" table)."""
    out = []
    points = []
    for model in table.models:
        col = roles.likelihood_column(table, model)
        if col is not None:
            points.append(_point(table, model, col.label))
    entropy = getattr(spec, "entropy", None)
    if points:
        out.append(Chart("likelihood vs entropy", charts.likelihood_chart(
            dataset, points, entropy, getattr(spec, "entropy_stderr", 0.0) or 0.0)))
    else:
        out.append(Chart("likelihood vs entropy", note="no model reports a likelihood on this dataset"))
    qcol, scol = roles.quality_column(table), roles.speed_column(table)
    if qcol is not None and scol is not None:
        models = [m for m in table.models if table.cell(m, qcol.label) and table.cell(m, scol.label)]
        image = charts.quality_speed_chart(dataset, models, [_point(table, m, qcol.label) for m in models],
                                           [_point(table, m, scol.label) for m in models], qcol, scol)
        out.append(Chart("quality vs sampling speed", image))
    else:
        out.append(Chart("quality vs sampling speed", note="needs a sample-quality statistic and a speed figure"))
    panels = []
    for col in roles.headline_columns(table)[:8]:
        if col.kind != QUALITY:
            continue
        cells = [(m, table.cell(m, col.label)) for m in table.models if table.cell(m, col.label) is not None]
        panels.append((col, cells))
    panels = panels[:4]
    if any(c.seeds > 1 for _, cells in panels for _, c in cells):
        out.append(Chart("spread over seeds", charts.spread_chart(dataset, panels)))
    else:
        out.append(Chart("spread over seeds", note="one seed per model: no spread to show "
                                                   "(run with --seeds N to see it)"))
    return out


def variant_chart(dataset: str, settings: Table) -> Optional[Chart]:
    """Quality against samples/s per sampler setting (the fitted one included), a line per model, from
    :func:`harness.report.variants.settings_table`'s rows ``model · setting``."""
    quality = [c for c in settings.columns if c.role == Role.SAMPLE_QUALITY and c.higher_is_better is not None]
    speed = [c for c in settings.columns if c.role == Role.SPEED and c.higher_is_better is not None]
    if not quality or not speed:
        return None
    qcol = min(quality, key=lambda c: (not c.headline, c.order, c.label))
    scol = min(speed, key=lambda c: (not c.headline, c.order, c.label))
    series: dict = {}
    for row in settings.models:
        model, _, setting = row.partition(" · ")
        q, s = _point(settings, row, qcol.label), _point(settings, row, scol.label)
        if q is not None and s is not None and math.isfinite(q.value) and math.isfinite(s.value):
            series.setdefault(model, []).append((setting, q, s))
    image = charts.variants_chart(dataset, list(series.items()), qcol, scol)
    return Chart("quality vs samples/s per sampler setting", image) if image is not None else None


def _drawn(what: str, draw, fallback):
    """``draw()``, or ``fallback(note)`` when it raises: a figure that cannot be drawn never costs a run
    its report (the tables do not depend on it)."""
    try:
        return draw()
    except Exception as exc:  # matplotlib or an unreadable artifact: say so in the page
        log.warning("report: %s could not be drawn: %s", what, exc, exc_info=True)
        return fallback(f"{what} could not be drawn: {type(exc).__name__}: {exc}")


def build_report(df: pd.DataFrame, directory: Path, outputs: Optional[Mapping] = None, runs: Optional[list] = None,
                 source=None, title: str = "harness results", meta: Optional[dict] = None) -> Report:
    """Everything a report shows, from the store's rows. ``source``: a
    :class:`harness.report.data.DatasetSource` for entropies, test images and true densities (None:
    leave those out)."""
    from harness.report.panels import dataset_panels, eval_examples_of
    from harness.report.summary import failures, skipped_jobs, skipped_metrics

    outputs = outputs or {}
    summary = summarise(df)
    quality, speed = build_tables(summary, outputs, QUALITY), build_tables(summary, outputs, SPEED)
    everything = build_tables(summary, outputs, "all")
    variants = build_tables(summary, outputs, "all", variants=True)
    labels = sampling_labels(df)
    datasets = sorted(set(df["dataset"].dropna().unique()) - {"-"}) if not df.empty else []
    datasets = [d for d in datasets if d in everything or d in variants
                or ((df["dataset"] == d) & (df["status"] == "ok")).any()]
    eval_examples = eval_examples_of(df)
    sections = []
    for dataset in datasets:
        spec = source.spec(dataset) if source is not None else None
        varied = variants.get(dataset)
        settings = settings_table(varied, everything.get(dataset), labels) if varied is not None else None
        section = Section(dataset, describe(spec), quality.get(dataset), speed.get(dataset), settings)
        if dataset in everything:
            section.charts = _drawn("the charts", lambda: dataset_charts(dataset, everything[dataset], spec),
                                    lambda note: [Chart("charts", note=note)])
        if varied is not None:
            chart = _drawn("the sampler-settings chart", lambda: variant_chart(dataset, settings),
                           lambda note: Chart("sampler settings", note=note))
            if chart is not None:
                section.charts.append(chart)
        section.panels, section.panel_note = _drawn(
            "the samples", lambda: dataset_panels(df, dataset, directory, source, eval_examples),
            lambda note: ([], note))
        sections.append(section)
    return Report(title, sections, list(runs or []), failures(df), skipped_jobs(df), skipped_metrics(df),
                  dict(meta or {}))
