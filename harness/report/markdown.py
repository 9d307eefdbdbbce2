"""report.md: the report's tables in Markdown (best cells in bold), what failed or was skipped, the
environment and the legend. Images live in report.html only."""

from __future__ import annotations

from harness.report.summarised import SummarisedRun
from harness.report.tables import LEGEND, Table


def table_markdown(table: Table) -> str:
    frame = table.strings(best_marker=lambda t: f"**{t}**", worst_marker=lambda t: f"⚠ {t}")
    frame.columns = [f"{c.title} {c.arrow}".strip() for c in table.columns]
    return frame.to_markdown()


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
            lines += [table_markdown(section.quality), ""]
        if section.speed is not None:
            lines += [f"Speed on {section.dataset}:", "", table_markdown(section.speed), ""]
        if section.variants is not None:
            lines += [f"Sampler settings on {section.dataset}:", "", table_markdown(section.variants), ""]
    lines += [LEGEND + " Arrows: ↓ lower is better, ↑ higher is better. Bold: best in column; ⚠: worst in "
                       "column.", ""]
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
