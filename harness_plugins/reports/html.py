"""The ``html`` report format: report.html, the self-contained page with samples and charts, written
by every run."""

from harness import hookimpl
from harness.report import ReportFormatSpec
from harness.report.html import html_page


@hookimpl
def harness_register_report_formats(register):
    register(ReportFormatSpec("html", html_page, "report.html", every_run=True,
                              description="one self-contained page: samples, charts, sortable tables, failures, "
                                          "environment"))
