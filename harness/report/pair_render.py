"""Views of two runs side by side (:mod:`harness.report.pair`): comparison.html (one grid per dataset,
each cell A, B and the change, coloured by verdict), comparison.md (one row per cell) and the terminal
lines (what changed significantly, counts of the rest)."""

from __future__ import annotations

import html

import pandas as pd

from harness.comparison import Verdict
from harness.contracts import QUALITY, SPEED
from harness.report.html import SCRIPT, STYLE, slug
from harness.report.pair import NOT_COMPARABLE, ONLY_A, ONLY_B, Pair

e = html.escape

RULE = ("A cell is worse (or better) only when it moved beyond the tolerance floor its metric declares and the "
        "seeds' spread does not explain it: a one-sided Welch test (z test when a side has one seed; a paired t "
        "where both runs kept per-example values on the same test examples) at alpha = {alpha:g}; the same rule "
        "as `harness compare`. Cells whose protocols differ are not comparable. Speed figures use a ratio floor, "
        "and its machine rule: as measured on the same machine, normalised by the two runs' calibrations across "
        "machines.")
CHANGES = (Verdict.WORSE, Verdict.BETTER)  # what the terminal lists and the grids colour
LABEL_ORDER = (Verdict.WORSE.value, Verdict.BETTER.value, NOT_COMPARABLE, ONLY_A, ONLY_B, Verdict.UNCHANGED.value)

PAIR_STYLE = """
td.worse{background:#fde2e1;box-shadow:inset 3px 0 0 #c62828}
td.better{background:#e3f4e1;box-shadow:inset 3px 0 0 #2e7d32}
td.notcomparable,td.onlyina,td.onlyinb{background:#f3f3f3;color:#777}
td .a,td .b{display:block}
td .a{color:#666}
td .chg{display:block;font-size:11px;color:#444}
td .verdict{font-weight:700}
"""


def _counts_text(counts: dict) -> str:
    return ", ".join(f"{counts[v]} {v}" for v in LABEL_ORDER if counts.get(v))


def terminal_lines(pair: Pair, path=None) -> str:
    out = [f"A: {pair.a}", f"B: {pair.b}"]
    out += [f"note: {n}" for n in pair.notes]
    for dataset, table in pair.tables.items():
        out.append("")
        out.append(f"{dataset}: {_counts_text(table.counts())}" + (f" ({table.note})" if table.note else ""))
        for col in table.columns:
            for model in table.models:
                c = table.cells.get((model, col.label))
                if c is None or c.verdict not in CHANGES:
                    continue
                out.append(f"  {c.label.upper():6} {model:12} {col.title}: {c.value_text(c.a, col.integer, '±')} -> "
                           f"{c.value_text(c.b, col.integer, '±')}  {c.change_text()}  {c.p_text()}")
    if path is not None:
        out += ["", f"every cell side by side: {path}"]
    return "\n".join(out)


def markdown_pair(pair: Pair) -> str:
    lines = ["# Two runs side by side", "", f"- A: {pair.a}", f"- B: {pair.b}"]
    lines += [f"- note: {n}" for n in pair.notes] + ["", RULE.format(alpha=pair.alpha), ""]
    for dataset, table in pair.tables.items():
        lines += [f"## {dataset}", "", _counts_text(table.counts()) + (f" ({table.note})" if table.note else ""), ""]
        rows = []
        for col in table.columns:
            for model in table.models:
                c = table.cells.get((model, col.label))
                if c is None:
                    continue
                verdict = f"**{c.label}**" if c.verdict in CHANGES else c.label
                rows.append({"model": model, "metric": f"{col.title} {col.arrow}".strip(),
                             "A": c.value_text(c.a, col.integer), "B": c.value_text(c.b, col.integer),
                             "change": c.change_text(), "test": c.p_text(), "verdict": verdict,
                             "note": c.note})
        lines += [pd.DataFrame(rows).to_markdown(index=False), ""]
    return "\n".join(lines)


def _cell_html(c, col) -> str:
    cls = c.label.replace(" ", "")
    tip = "; ".join(t for t in (c.label, c.p_text(), c.note,
                                f"tolerance {c.tolerance.describe()}" if c.tolerance is not None else "") if t)
    verdict = f"<span class='verdict'>{e(c.label)}</span> " if c.verdict in CHANGES else ""
    sort = repr(c.decision.delta) if c.decision is not None else ""
    return (f"<td class='{cls}' title='{e(tip)}' data-v='{sort}'><span class='a'>A {e(c.value_text(c.a, col.integer))}"
            f"</span><span class='b'>B {e(c.value_text(c.b, col.integer))}</span>"
            f"<span class='chg'>{verdict}{e(c.change_text())} {e(c.p_text() if c.verdict != Verdict.UNCHANGED else '')}"
            "</span></td>")


def _grid(table, columns: list) -> str:
    head = "".join(f"<th title='{e(c.direction + ' is better' if c.direction else '')}'>{e(c.label)}"
                   f"{' <span class=unit>[' + e(c.unit) + ']</span>' if c.unit else ''} {c.arrow}</th>"
                   for c in columns)
    body = []
    for model in table.models:
        cells = [f"<th scope='row' data-v='{e(model)}'>{e(model)}</th>"]
        for col in columns:
            c = table.cells.get((model, col.label))
            cells.append("<td data-v=''></td>" if c is None else _cell_html(c, col))
        body.append("<tr>" + "".join(cells) + "</tr>")
    return (f"<div class='scroll'><table class='results sortable'><thead><tr><th>model</th>{head}</tr></thead>"
            f"<tbody>{''.join(body)}</tbody></table></div>")


def html_pair(pair: Pair, title: str = "Two runs side by side") -> str:
    parts = ["<!doctype html>", "<html lang='en'><head><meta charset='utf-8'>",
             f"<title>{e(title)}</title><style>{STYLE}{PAIR_STYLE}</style></head><body>",
             f"<header><h1>{e(title)}</h1><p>A: {e(pair.a)}<br>B: {e(pair.b)}</p>",
             "<nav>" + " ".join(f"<a href='#{slug(d)}'>{e(d)}</a>" for d in pair.tables) + "</nav></header><main>"]
    if pair.notes:
        notes = "".join(f"<li>{e(n)}</li>" for n in pair.notes)
        parts.append(f"<section><h2>Notes</h2><ul>{notes}</ul></section>")
    for dataset, table in pair.tables.items():
        parts.append(f"<section class='dataset' id='{slug(dataset)}' data-dataset='{e(dataset)}'><h2>{e(dataset)}</h2>")
        parts.append(f"<p class='desc'>{e(_counts_text(table.counts()))}{' - ' + e(table.note) if table.note else ''}"
                     "</p>")
        for part in (QUALITY, SPEED):
            columns = [c for c in table.columns if c.kind == part]
            if columns:
                parts += [f"<h3>{part.capitalize()}</h3>", _grid(table, columns)]
        parts.append("</section>")
    parts.append("<section id='legend'><h2>How to read this comparison</h2><ul class='legend'>"
                 f"<li>{e(RULE.format(alpha=pair.alpha))}</li>"
                 "<li><span style='background:#fde2e1;padding:0 4px'>red</span>: B is significantly worse than A; "
                 "<span style='background:#e3f4e1;padding:0 4px'>green</span>: significantly better; grey: not "
                 "compared (only in one run, or not comparable, the reason on hover).</li>"
                 "<li>Change: B - A (and its share of A), or the ratio B / A for speed figures; hover a cell for the "
                 "test and the tolerance. Marks: (x) exact, (b) bound, (e) estimate.</li></ul></section>")
    parts.append(f"</main><script>{SCRIPT}</script></body></html>")
    return "\n".join(parts)
