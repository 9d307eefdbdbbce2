"""The ``markdown`` report format: report.md, the tables in Markdown, written by every run."""

from harness import hookimpl
from harness.report import ReportFormatSpec
from harness.report.markdown import markdown_page


@hookimpl
def harness_register_report_formats(register):
    register(ReportFormatSpec("markdown", markdown_page, "report.md", every_run=True,
                              description="the comparison tables, failures, skips and environment in Markdown"))
