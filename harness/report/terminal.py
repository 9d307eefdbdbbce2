"""The terminal summary of ``run`` and ``report`` (the ``terminal`` report format): one compact table per
dataset with the headline metrics (the outputs their metrics declare ``headline``), fitted to a terminal
width: standard errors are dropped first, then trailing columns, and the summary says so. Each heading
says how many seeds the cells hold; the key says which rule marked the best cells."""

from __future__ import annotations

import textwrap

from harness.report import roles
from harness.report.summarised import SummarisedRun
from harness.report.tables import Table

WIDTH = 100
GAP = "  "
KEY = "(x) exact, (b) bound, (e) estimate; ± over seeds (with one seed: its test-set error)"
PAIRED_KEY = ("* best in column: the best and every model not significantly worse by the paired test (Holm, level "
              "{alpha:g}) in {columns}; elsewhere ties within standard errors over seeds marked together")
UNPAIRED_KEY = "* best in column (ties within standard errors over seeds marked together)"


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


def seeds_note(table: Table) -> str:
    """``3 seeds each``, ``1 seed each``, or ``1-3 seeds`` for the models of ``table``."""
    counts = sorted({c.seeds for c in table.cells.values()})
    if len(counts) == 1:
        return f"{counts[0]} seed{'s' if counts[0] != 1 else ''} each"
    return f"{counts[0]}-{counts[-1]} seeds (1 seed: {', '.join(table.one_seed)})"


def terminal_summary(run: SummarisedRun, width: int = WIDTH) -> str:
    """Every dataset's headline table and the key to the marks."""
    tables = run.tables("all")
    out, paired = [], []
    for dataset, table in tables.items():
        lines, note = fit_table(table, width)
        shown = {c.label for c in roles.headline_columns(table)}
        paired += [label for label, marks in table.marks.items() if label in shown and label not in paired
                   and any(m.matrix is not None for m in marks)]
        heading = f"## {dataset}  ({seeds_note(table)}" + (f"; {note})" if note else ")")
        out += [heading] if len(heading) <= width else [f"## {dataset}  ({seeds_note(table)})", f"  ({note})"]
        out += ["  " + line for line in lines] if max(map(len, lines)) + 2 <= width else lines
        out.append("")
    if tables:
        key = PAIRED_KEY.format(alpha=run.alpha, columns=", ".join(paired)) if paired else UNPAIRED_KEY
        out += textwrap.wrap(key, width) + [KEY]
    return "\n".join(out)
