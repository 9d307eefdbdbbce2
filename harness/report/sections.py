"""One dataset's section of a report: its tables at once, its charts and sample panels drawn when a
format first asks for them (the terminal and the Markdown page never do). Nothing here formats text
for a particular output."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from functools import cached_property
from typing import Optional

from harness.contracts import QUALITY, SPEED, Role
from harness.report import charts, roles
from harness.report.evidence import spread_rows
from harness.report.images import Image
from harness.report.tables import Table
from harness.report.variants import settings_table

log = logging.getLogger(__name__)


@dataclass
class Chart:
    title: str
    image: Optional[Image] = None
    note: str = ""  # why there is no chart, or what to read from it


class Section:
    """One dataset of a :class:`~harness.report.summarised.SummarisedRun`: ``description``, the
    ``quality``, ``speed`` and sampler-``variants`` tables (None where there is nothing to show), the
    paired ``matrices`` of its likelihood columns, the ``spread`` between seeds beside the test error
    (:func:`harness.report.evidence.spread_rows`), and, drawn on first use, ``charts``, the sample
    ``panels`` (with ``panel_note`` when there are none) and the ``neighbours`` panels, samples beside
    their nearest training images (with ``neighbour_note``: how to read them, or why there are none;
    both empty where no measured metric offers them)."""

    def __init__(self, run, dataset: str):
        self.run = run
        self.dataset = dataset
        self.spec = run.source.spec(dataset) if run.source is not None else None
        self.description = describe(self.spec)
        self.quality = run.tables(QUALITY).get(dataset)
        self.speed = run.tables(SPEED).get(dataset)
        self.everything = run.tables("all").get(dataset)
        varied = run.tables("all", variants=True).get(dataset)
        self.variants = (settings_table(varied, self.everything, run.sampling_labels)
                         if varied is not None else None)
        self.matrices = run.matrices.get(dataset, [])

    @cached_property
    def spread(self) -> list:
        """Per model with several seeds, the seed spread of each quality column beside its test error."""
        return spread_rows(self.quality) if self.quality is not None else []

    @cached_property
    def charts(self) -> list:
        out = []
        if self.everything is not None:
            out = _drawn("the charts", lambda: dataset_charts(self.dataset, self.everything, self.spec),
                         lambda note: [Chart("charts", note=note)])
        if self.variants is not None:
            chart = _drawn("the sampler-settings chart", lambda: variant_chart(self.dataset, self.variants),
                           lambda note: Chart("sampler settings", note=note))
            if chart is not None:
                out.append(chart)
        return out

    @cached_property
    def _samples(self) -> tuple:
        from harness.report.panels import dataset_panels

        run = self.run
        return _drawn("the samples", lambda: dataset_panels(run.results, self.dataset, run.directory, run.source,
                                                            run.eval_examples),
                      lambda note: ([], note))

    @property
    def panels(self) -> list:
        return self._samples[0]

    @property
    def panel_note(self) -> str:
        return self._samples[1]

    @cached_property
    def _neighbours(self) -> tuple:
        from harness.report.nearest import dataset_neighbour_panels

        return _drawn("the nearest training examples", lambda: dataset_neighbour_panels(self.run, self.dataset),
                      lambda note: ([], note))

    @property
    def neighbours(self) -> list:
        return self._neighbours[0]

    @property
    def neighbour_note(self) -> str:
        return self._neighbours[1]


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
