"""The ``latex`` report format: tables.tex, booktabs tables for a paper, on request
(``report DIR --format latex``, which also prints them)."""

from harness import hookimpl
from harness.report import ReportFormatSpec
from harness.report.latex import latex_document


@hookimpl
def harness_register_report_formats(register):
    register(ReportFormatSpec("latex", latex_document, "tables.tex", prints=True,
                              description="each dataset's quality and speed tables as booktabs tabulars"))
