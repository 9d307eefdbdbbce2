"""The terminal summary of ``run`` and ``report`` (the ``terminal`` report format): one compact table per
dataset with the headline metrics (the outputs their metrics declare ``headline``), fitted to a terminal
width: standard errors are dropped first, then trailing columns, and the summary says so."""

from __future__ import annotations

from harness.report import roles
from harness.report.summarised import SummarisedRun
from harness.report.tables import Table

WIDTH = 100
GAP = "  "
KEY = "* best in column (ties within standard errors marked together); (x) exact, (b) bound, (e) estimate"


def _render(table: Table, columns: list, bare: set) -> list:
    """The table's lines; columns whose label is in ``bare`` are shown without standard errors."""
    header = [["model", ""]] + [[f"{c.label} {c.arrow}".strip(), c.unit] for c in columns]
    body = []
    for model in table.models:
        row = [model]
        for col in columns:
            c = table.cell(model, col.label)
            text = "" if c is None else (c.text(col.integer, sep="±", with_error=col.label not in bare)
                                         + ("*" if c.best else ""))
            row.append(text)
        body.append(row)
    widths = [max(len(h[0]), len(h[1]), *(len(r[i]) for r in body)) for i, h in enumerate(header)]
    lines = []
    for k in (0, 1):
        if k == 1 and not any(h[1] for h in header):
            continue
        lines.append(GAP.join((h[k].ljust(w) if i == 0 else h[k].rjust(w)) for i, (h, w) in
                              enumerate(zip(header, widths))).rstrip())
    for row in body:
        lines.append(GAP.join((v.ljust(w) if i == 0 else v.rjust(w)) for i, (v, w) in
                              enumerate(zip(row, widths))).rstrip())
    return lines


def fit_table(table: Table, width: int = WIDTH) -> tuple:
    """(lines, note): the headline columns rendered within ``width`` characters: standard errors are
    left out column by column from the right, then columns are dropped from the right."""
    columns = roles.headline_columns(table)
    bare: set = set()
    lines = _render(table, columns, bare)
    def saving(col) -> int:  # how much narrower the table gets without this column's errors
        return max(map(len, lines)) - max(map(len, _render(table, columns, bare | {col.label})))

    for col in reversed(columns):  # speed figures (declared last) lose theirs first
        if max(map(len, lines)) <= width:
            break
        if saving(col) <= 0:
            continue
        bare.add(col.label)
        lines = _render(table, columns, bare)
    dropped = []
    while max(map(len, lines)) > width and len(columns) > 1:
        dropped.insert(0, columns.pop().label)
        lines = _render(table, columns, bare)
    notes = []
    shown_bare = [c.label for c in columns if c.label in bare]
    if shown_bare:
        notes.append("± left out for " + ", ".join(shown_bare))
    if dropped:
        notes.append("not shown: " + ", ".join(dropped))
    return lines, "; ".join(notes)


def terminal_summary(run: SummarisedRun, width: int = WIDTH) -> str:
    """Every dataset's headline table and the key to the marks."""
    tables = run.tables("all")
    out = []
    for dataset, table in tables.items():
        lines, note = fit_table(table, width)
        out.append(f"## {dataset}" + (f"  ({note})" if note else ""))
        out += ["  " + line for line in lines] if max(map(len, lines)) + 2 <= width else lines
        out.append("")
    if tables:
        out.append(KEY)
    return "\n".join(out)
