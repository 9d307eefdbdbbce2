r"""``report DIR --format latex``: the comparison tables as booktabs ``tabular`` bodies for a paper,
written with pandas' Styler: means $\pm$ standard errors, the estimator marks, the best per column in
bold (the same rule as the HTML report), units and directions in the headers. Each table is a
``tabular`` to ``\input`` inside a ``table`` environment; the preamble needs ``\usepackage{booktabs}``.
"""

from __future__ import annotations

import re

import pandas as pd

from harness.contracts import QUALITY, SPEED, UserError
from harness.report.summarised import SummarisedRun
from harness.report.tables import LEGEND, Table

_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
            "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}
_SCI = re.compile(r"(-?\d+(?:\.\d+)?)e([+-])0*(\d+)")


def escape(text: str) -> str:
    """Text safe in LaTeX: the ten special characters escaped."""
    return "".join(_SPECIAL.get(ch, ch) for ch in str(text))


def _sci(text: str) -> str:
    """``2.280e+06`` -> ``2.280\\times10^{6}`` (inside math)."""
    return _SCI.sub(lambda m: rf"{m.group(1)}\times10^{{{'-' if m.group(2) == '-' else ''}{m.group(3)}}}", text)


def cell_tex(cell, integer: bool) -> str:
    value = _sci(cell.text(integer, sep=" \\pm ", with_mark=False))
    body = (rf"$\mathbf{{{value}}}$" if cell.best else rf"$\underline{{{value}}}$" if cell.worst
            else f"${value}$")
    return body + (f" ({cell.mark})" if cell.mark else "")


def header_tex(col) -> str:
    arrow = {"higher": r" $\uparrow$", "lower": r" $\downarrow$"}.get(col.direction, "")
    unit = f" [{escape(col.unit)}]" if col.unit else ""
    return escape(col.label) + unit + arrow


def table_tex(table: Table) -> str:
    """One booktabs tabular: a row per model, a column per metric identity."""
    data = {"model": [escape(m) for m in table.models], "seeds": [table.seeds_text(m) for m in table.models]}
    for col in table.columns:
        data[header_tex(col)] = [cell_tex(table.cell(m, col.label), col.integer)
                                 if table.cell(m, col.label) is not None else "" for m in table.models]
    frame = pd.DataFrame(data)
    frame.columns = ["model", "seeds"] + [header_tex(c) for c in table.columns]
    styler = frame.style.hide(axis="index")
    return styler.to_latex(hrules=True, column_format="lr" + "r" * len(table.columns))


def latex_document(run: SummarisedRun) -> str:
    """Every dataset's quality and speed tables, each preceded by a comment naming it (the ``latex``
    report format); a UserError when the run has no ok measurement to put in a table."""
    quality, speed = run.tables(QUALITY), run.tables(SPEED)
    if not quality and not speed:
        raise UserError(f"no ok measurements in {run.directory}: no table to write")
    lines = [f"% {escape(run.title)}: tables written by `python -m harness report --format latex`.",
             "% Each tabular needs \\usepackage{booktabs}; \\input it inside a table environment.",
             *(f"% {line}" for line in _wrap(LEGEND + " Bold: best in column. Underlined: worst in column.")), ""]
    for dataset in sorted(set(quality) | set(speed)):
        for part, tables in (("quality", quality), ("speed", speed)):
            if dataset in tables:
                lines += [f"% dataset: {dataset} ({part})", table_tex(tables[dataset]).rstrip(), ""]
    return "\n".join(lines)


def _wrap(text: str, width: int = 100) -> list:
    words, lines, line = text.split(), [], ""
    for w in words:
        if line and len(line) + 1 + len(w) > width:
            lines.append(line)
            line = w
        else:
            line = f"{line} {w}".strip()
    return lines + ([line] if line else [])
