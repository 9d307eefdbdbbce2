"""The ``terminal`` report format: the compact headline tables printed at the end of every run."""

from harness import hookimpl
from harness.report import ReportFormatSpec
from harness.report.formats import STDOUT
from harness.report.terminal import terminal_summary


@hookimpl
def harness_register_report_formats(register):
    register(ReportFormatSpec("terminal", terminal_summary, STDOUT, every_run=True,
                              description="each dataset's headline numbers, fitted to 100 columns"))
