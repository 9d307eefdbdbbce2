"""The ``csv`` and ``json`` report formats: every row of the store (one measurement, skip or failure a
row) in the documented column order, results.csv and results.json, written by every run. A row's
``protocol`` is JSON text in the CSV and an object in the JSON."""

import json

from harness import hookimpl
from harness.report import ReportFormatSpec


def results_csv(run) -> str:
    return run.tidy.to_csv(index=False)


def results_json(run) -> str:
    rows = run.tidy.copy()
    rows["protocol"] = [json.loads(p) if isinstance(p, str) and p else None for p in rows["protocol"]]
    return rows.to_json(orient="records", indent=1)


@hookimpl
def harness_register_report_formats(register):
    register(ReportFormatSpec("csv", results_csv, "results.csv", every_run=True,
                              description="every result row, one measurement, skip or failure a row"))
    register(ReportFormatSpec("json", results_json, "results.json", every_run=True,
                              description="the rows of results.csv as a JSON list of records"))
