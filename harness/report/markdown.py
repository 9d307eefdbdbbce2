"""report.md: the report's tables in Markdown (best cells in bold, which rule marked which column, the
protocol of each column), the paired matrices of the likelihood columns, the spread between seeds, what
failed or was skipped, the environment and the legend. Images live in report.html only."""

from __future__ import annotations

import pandas as pd

from harness.report.evidence import MatrixView, spread_text
from harness.report.sections import Section
from harness.report.summarised import SummarisedRun
from harness.report.tables import SEEDS_COLUMN, Table, legend


def table_markdown(table: Table) -> str:
    frame = table.strings(best_marker=lambda t: f"**{t}**", worst_marker=lambda t: f"⚠ {t}")
    frame.columns = [SEEDS_COLUMN] + [f"{c.title} {c.arrow}".strip() for c in table.columns]
    return frame.to_markdown()


def table_notes(table: Table) -> list:
    """The lines under a table: which rule marked which columns, models with one seed, and each column's
    protocol."""
    lines = []
    rules = table.rules()
    if rules:
        lines.append(f"- best marked by {rules}")
    if table.one_seed:
        lines.append(f"- one seed ({', '.join(table.one_seed)}): the ± is one trained model's test-set error, "
                     "without the variation between training runs")
    lines += [f"- protocol of {label}: {text}" for label, text in table.protocols()]
    return lines + [""] if lines else []


def matrix_markdown(view: MatrixView) -> str:
    """A paired matrix: row minus column ± its error (Holm-adjusted p), bold where significant."""
    m, models = view.matrix, view.models
    rows = {}
    for a in models:
        cells = []
        for b in models:
            if a == b:
                cells.append("")
                continue
            pair, p = m.pair(a, b), m.p_adjusted(a, b)
            text = f"{pair.difference:+.4g} ± {pair.stderr:.2g} (p {p:.2g})"
            cells.append(f"**{text}**" if m.significant(a, b) else text)
        rows[a] = cells
    return pd.DataFrame.from_dict(rows, orient="index", columns=models).to_markdown()


def evidence_markdown(section: Section) -> list:
    lines = []
    for view in section.matrices:
        lines += [f"Paired differences on {section.dataset}, {view.title} [{view.unit}]: {view.caption}", "",
                  matrix_markdown(view), ""]
    if section.spread:
        labels = list(dict.fromkeys(label for row in section.spread for label in row.spreads))
        frame = pd.DataFrame({label: [spread_text(row.spreads[label]) if label in row.spreads else ""
                                      for row in section.spread] for label in labels},
                             index=pd.Index([row.model for row in section.spread], name="model"))
        lines += [f"Spread between seeds on {section.dataset} (sd over seeds / one seed's test-set error, their "
                  "ratio, and which dominates):", "", frame.to_markdown(), ""]
    return lines


def markdown_page(report: SummarisedRun) -> str:
    """The whole page (the ``markdown`` report format)."""
    lines = [f"# {report.title}", ""]
    for k, v in report.meta.items():
        lines.append(f"- {k}: {v}")
    if report.meta:
        lines.append("")
    for section in report.sections:
        lines += [f"## {section.dataset}", ""]
        if section.description:
            lines += [section.description, ""]
        if section.quality is not None:
            lines += [table_markdown(section.quality), ""] + table_notes(section.quality)
        if section.speed is not None:
            lines += [f"Speed on {section.dataset}:", "", table_markdown(section.speed), ""]
            lines += table_notes(section.speed)
        if section.variants is not None:
            lines += [f"Sampler settings on {section.dataset}:", "", table_markdown(section.variants), ""]
        lines += evidence_markdown(section)
    lines += [legend(report.alpha) + " Arrows: ↓ lower is better, ↑ higher is better. Bold: best in column; ⚠: worst "
              "in column.", ""]
    if report.problem_count or not report.not_applicable.empty:
        lines += ["## Failed and skipped", ""]
        for title, frame in (("Failed", report.failed), ("Skipped pairs", report.skipped),
                             ("Metrics that did not apply to a job that ran", report.not_applicable)):
            if not frame.empty:
                lines += [f"{title}:", "", frame.fillna("").to_markdown(index=False), ""]
    rows = report.environment
    if rows:
        lines += ["## Environment", ""]
        for row in rows:
            lines += [f"- {k}: {v}" for k, v in row.items()] + [""]
    return "\n".join(lines)
