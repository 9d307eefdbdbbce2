"""report.html: one self-contained page (styles, script and images inline; nothing fetched) with one
section per dataset: sample panels, charts, the quality and speed tables with the best per column
marked (with the rule that marked each column and each column's protocol), the paired matrices of the
likelihood columns and the spread between seeds; then what failed or was skipped, the environment and
the legend. Tables sort on a click on their header (a few lines of inline script)."""

from __future__ import annotations

import html
import math
import re

import pandas as pd

from harness.report.evidence import MatrixView, spread_text
from harness.report.sections import Section
from harness.report.summarised import SummarisedRun
from harness.report.tables import BEST_RULE, MARK_LEGEND, VALUES_RULE, WORST_RULE, Table

STYLE = """
:root{--ink:#1d1d1f;--muted:#666;--line:#d9d9de;--best:#e3f4e1;--bestline:#2e7d32;--bg:#fafafa}
:root{--worst:#fde4e1;--worstline:#c62828}
*{box-sizing:border-box}
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;color:var(--ink);
 margin:0;background:var(--bg)}
header{background:#fff;border-bottom:1px solid var(--line);padding:1.2em 2em}
header h1{margin:0 0 .2em;font-size:1.5em}
header p{margin:.2em 0;color:var(--muted)}
nav a{margin-right:1em}
main{padding:0 2em 2em;max-width:1400px}
section{background:#fff;border:1px solid var(--line);border-radius:6px;margin:1.5em 0;padding:1em 1.5em}
h2{margin:.2em 0 .1em;font-size:1.3em}
h3{margin:1.2em 0 .4em;font-size:1.05em}
.desc{color:var(--muted);margin:0 0 .5em}
.panels,.charts{display:flex;flex-wrap:wrap;gap:12px;align-items:flex-start}
figure{margin:0;background:#fff;border:1px solid var(--line);border-radius:4px;padding:6px}
figure.reference{border-color:#888;background:#f4f4f6}
figure img{display:block;max-width:100%;height:auto;image-rendering:pixelated}
.charts figure img{image-rendering:auto}
figcaption{font-size:12px;color:var(--muted);max-width:380px;margin-top:4px}
figcaption b{color:var(--ink)}
.missing .note{width:220px;height:120px;display:flex;align-items:center;justify-content:center;text-align:center;
 color:var(--muted);background:repeating-linear-gradient(45deg,#f6f6f6,#f6f6f6 8px,#fff 8px,#fff 16px);
 font-size:12px;padding:8px}
.note-line{color:var(--muted);font-style:italic}
.scroll{overflow-x:auto;max-width:100%}
table{border-collapse:collapse;margin:.3em 0 .8em;font-size:13px}
th,td{border:1px solid var(--line);padding:4px 8px}
td{text-align:right;white-space:nowrap;font-variant-numeric:tabular-nums}
thead th{background:#f0f0f3;cursor:pointer;user-select:none}
thead th[aria-sort=ascending]::after{content:" \\25B2"}
thead th[aria-sort=descending]::after{content:" \\25BC"}
tbody th{text-align:left;font-weight:600}
td.best{background:var(--best);font-weight:700;box-shadow:inset 3px 0 0 var(--bestline)}
td.worst{background:var(--worst);font-weight:700;box-shadow:inset 3px 0 0 var(--worstline)}
.mark{color:var(--muted);font-weight:400}
.unit{color:var(--muted);font-weight:400}
table.plain td{text-align:left;white-space:normal}
.legend li{margin:.2em 0}
ul.notes{margin:0 0 .8em;padding-left:1.2em;color:var(--muted);font-size:12px}
td.sig{font-weight:700}
"""

SCRIPT = """
(function () {
  function key(cell) {
    var v = cell.getAttribute("data-v");
    if (v === null || v === "") return null;
    var n = Number(v);
    return isNaN(n) ? v.toLowerCase() : n;
  }
  document.querySelectorAll("table.sortable").forEach(function (table) {
    var heads = table.querySelectorAll("thead th");
    heads.forEach(function (th, col) {
      th.title = (th.title ? th.title + " - " : "") + "click to sort";
      th.addEventListener("click", function () {
        var body = table.tBodies[0], rows = Array.prototype.slice.call(body.rows);
        var up = th.getAttribute("aria-sort") !== "ascending";
        heads.forEach(function (h) { h.removeAttribute("aria-sort"); });
        th.setAttribute("aria-sort", up ? "ascending" : "descending");
        rows.sort(function (a, b) {
          var x = key(a.cells[col]), y = key(b.cells[col]);
          if (x === null) return y === null ? 0 : 1;
          if (y === null) return -1;
          return (x < y ? -1 : x > y ? 1 : 0) * (up ? 1 : -1);
        });
        rows.forEach(function (r) { body.appendChild(r); });
      });
    });
  });
})();
"""

e = html.escape


def slug(name: str) -> str:
    return "dataset-" + re.sub(r"[^A-Za-z0-9_-]+", "-", str(name))


def table_html(table: Table, caption: str = "") -> str:
    head = ["<th data-type='text'>model</th>", "<th title='seeds per cell'>seeds</th>"]
    for col in table.columns:
        tip = "; ".join(t for t in (col.description, f"{col.direction} is better" if col.direction else "") if t)
        unit = f" <span class='unit'>[{e(col.unit)}]</span>" if col.unit else ""
        head.append(f"<th title='{e(tip)}'>{e(col.label)}{unit} {col.arrow}</th>")
    body = []
    for model in table.models:
        seeds = table.seeds_text(model)
        cells = [f"<th scope='row' data-v='{e(model)}'>{e(model)}</th>", f"<td data-v='{e(seeds)}'>{e(seeds)}</td>"]
        for col in table.columns:
            c = table.cell(model, col.label)
            if c is None:
                cells.append("<td data-v=''></td>")
                continue
            text = e(c.text(col.integer, with_mark=False))
            mark = f" <span class='mark'>({c.mark})</span>" if c.mark else ""
            v = repr(c.mean) if math.isfinite(c.mean) else ""
            cls = (" class='best' title='best in column'" if c.best else
                   " class='worst' title='worst in column: the model to look at first'" if c.worst else "")
            cells.append(f"<td data-v='{v}'{cls}>{text}{mark}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    cap = f"<caption class='note-line'>{e(caption)}</caption>" if caption else ""
    return (f"<div class='scroll'><table class='results sortable'>{cap}<thead><tr>{''.join(head)}</tr></thead>"
            f"<tbody>{''.join(body)}</tbody></table></div>")


def notes_html(table: Table) -> str:
    """Under a table: which rule marked which columns, models with one seed, each column's protocol."""
    items = []
    if table.rules():
        items.append(f"best marked by {e(table.rules())}")
    if table.one_seed:
        items.append(f"one seed ({e(', '.join(table.one_seed))}): the ± is one trained model's test-set error, "
                     "without the variation between training runs")
    items += [f"protocol of {e(label)}: {e(text)}" for label, text in table.protocols()]
    return "<ul class='notes'>" + "".join(f"<li>{i}</li>" for i in items) + "</ul>" if items else ""


def matrix_html(view: MatrixView) -> str:
    """A paired matrix: row minus column ± its error, Holm-adjusted p in the title; bold where significant."""
    m, models = view.matrix, view.models
    head = "<th></th>" + "".join(f"<th>{e(b)}</th>" for b in models)
    body = []
    for a in models:
        cells = [f"<th scope='row'>{e(a)}</th>"]
        for b in models:
            if a == b:
                cells.append("<td></td>")
                continue
            pair, p = m.pair(a, b), m.p_adjusted(a, b)
            cls = " class='sig'" if m.significant(a, b) else ""
            tip = f"p = {p:.3g} (Holm), unadjusted {pair.p_value:.3g}, df {pair.df:.3g}; {pair.estimator}"
            cells.append(f"<td{cls} title='{e(tip)}'>{pair.difference:+.4g} ± {pair.stderr:.2g} "
                         f"<span class='mark'>(p {p:.2g})</span></td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    caption = f"{view.title} [{view.unit}]: {view.caption}"
    return (f"<div class='scroll'><table class='matrix'><caption class='note-line'>{e(caption)}</caption>"
            f"<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table></div>")


def spread_html(section: Section) -> str:
    rows = section.spread
    labels = list(dict.fromkeys(label for row in rows for label in row.spreads))
    head = "<th>model</th>" + "".join(f"<th>{e(label)}</th>" for label in labels)
    body = "".join("<tr><th scope='row'>" + e(row.model) + "</th>"
                   + "".join(f"<td>{e(spread_text(row.spreads[label]))}</td>" if label in row.spreads else "<td></td>"
                             for label in labels) + "</tr>" for row in rows)
    return (f"<div class='scroll'><table><caption class='note-line'>standard deviation over seeds / one seed's "
            f"test-set error, their ratio, and which dominates</caption><thead><tr>{head}</tr></thead>"
            f"<tbody>{body}</tbody></table></div>")


def _img(image, alt: str) -> str:
    return f"<img src='{image.uri()}' width='{image.width}' height='{image.height}' alt='{e(alt)}'>"


def panels_html(section: Section) -> str:
    return figures_html(section.panels, section.panel_note or "no samples to show")


def neighbours_html(section: Section) -> str:
    """Samples beside their nearest training images, under the note that says how to read them."""
    note = f"<p class='note-line'>{e(section.neighbour_note)}</p>" if section.neighbour_note else ""
    return note + (figures_html(section.neighbours, "") if section.neighbours else "")


def figures_html(panels: list, empty_note: str) -> str:
    """Panels as figures with captions (a missing image as its note), or ``empty_note`` when there are none."""
    if not panels:
        return f"<p class='note-line'>{e(empty_note)}</p>"
    out = []
    for p in panels:
        cls = "panel reference" if p.reference else "panel"
        caption = f"<figcaption><b>{e(p.title)}</b>{': ' + e(p.caption) if p.caption else ''}</figcaption>"
        if p.image is not None:
            out.append(f"<figure class='{cls}'>{_img(p.image, p.title + ' ' + p.caption)}{caption}</figure>")
        else:
            out.append(f"<figure class='{cls} missing'><div class='note'>{e(p.note)}</div>{caption}</figure>")
    return "<div class='panels'>" + "".join(out) + "</div>"


def charts_html(section: Section) -> str:
    out = []
    for chart in section.charts:
        if chart.image is not None:
            out.append(f"<figure class='chart'>{_img(chart.image, section.dataset + ': ' + chart.title)}</figure>")
        else:
            out.append(f"<figure class='chart missing'><div class='note'>{e(chart.title)}: {e(chart.note)}</div>"
                       "</figure>")
    return "<div class='charts'>" + "".join(out) + "</div>"


def section_html(section: Section) -> str:
    parts = [f"<section class='dataset' id='{slug(section.dataset)}' data-dataset='{e(section.dataset)}'>",
             f"<h2>{e(section.dataset)}</h2>"]
    if section.description:
        parts.append(f"<p class='desc'>{e(section.description)}</p>")
    parts += ["<h3>Samples</h3>", panels_html(section)]
    if section.neighbours or section.neighbour_note:
        parts += ["<h3>Nearest training examples</h3>", neighbours_html(section)]
    if section.charts:
        parts += ["<h3>Charts</h3>", charts_html(section)]
    if section.quality is not None:
        parts += ["<h3>Quality</h3>", table_html(section.quality), notes_html(section.quality)]
    if section.speed is not None:
        parts += ["<h3>Speed</h3>", table_html(section.speed), notes_html(section.speed)]
    if section.matrices:
        parts += ["<h3>Paired differences</h3>"] + [matrix_html(view) for view in section.matrices]
    if section.spread:
        parts += ["<h3>Spread between seeds</h3>", spread_html(section)]
    if section.variants is not None:
        parts += ["<h3>Sampler settings</h3>", table_html(section.variants, "one fitted model measured at several "
                                                                             "sampler settings, a row each")]
    if section.quality is None and section.speed is None and section.variants is None:
        parts.append("<p class='note-line'>no ok measurement on this dataset</p>")
    parts.append("</section>")
    return "\n".join(parts)


def _plain_table(frame: pd.DataFrame) -> str:
    head = "".join(f"<th>{e(str(c))}</th>" for c in frame.columns)
    body = "".join("<tr>" + "".join(f"<td>{e(str(v))}</td>" for v in row) + "</tr>"
                   for row in frame.fillna("").itertuples(index=False))
    return f"<table class='plain'><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def problems_html(report: SummarisedRun) -> str:
    """Failed jobs and metrics, skipped pairs (each with its reason), then the metrics that did not
    apply, folded."""
    if report.failed.empty and report.skipped.empty and report.not_applicable.empty:
        return ""
    parts = ["<section id='problems'><h2>Failed and skipped</h2>"]
    if not report.failed.empty:
        failed = report.failed.rename(columns={"metric": "metric (empty: the whole job)"})
        parts += [f"<h3>Failed ({len(failed)})</h3>", _plain_table(failed)]
    if not report.skipped.empty:
        parts += [f"<h3>Skipped pairs ({len(report.skipped)})</h3>", _plain_table(report.skipped)]
    if report.failed.empty and report.skipped.empty:
        parts.append("<p class='note-line'>nothing failed; no pair was skipped</p>")
    if not report.not_applicable.empty:
        parts += [f"<details><summary>Metrics that did not apply to a job that ran ({len(report.not_applicable)})"
                  "</summary>", _plain_table(report.not_applicable), "</details>"]
    parts.append("</section>")
    return "\n".join(parts)


def environment_html(report: SummarisedRun) -> str:
    rows = report.environment
    if not rows and not report.meta:
        return ""
    parts = ["<section id='environment'><h2>Environment</h2>"]
    if rows:
        keys = list(dict.fromkeys(k for r in rows for k in r))
        head = "".join(f"<th>{e(r['run id'])}</th>" for r in rows) if len(rows) > 1 else "<th>value</th>"
        body = "".join(f"<tr><th scope='row'>{e(k)}</th>" + "".join(f"<td>{e(str(r.get(k, '')))}</td>" for r in rows)
                       + "</tr>" for k in keys)
        parts.append(f"<table class='plain'><thead><tr><th></th>{head}</tr></thead><tbody>{body}</tbody></table>")
    else:
        body = "".join(f"<tr><th scope='row'>{e(str(k))}</th><td>{e(str(v))}</td></tr>" for k, v in report.meta.items())
        parts.append(f"<table class='plain'><tbody>{body}</tbody></table>")
    parts.append("</section>")
    return "\n".join(parts)


def legend_html(alpha: float) -> str:
    return ("<section id='legend'><h2>How to read this report</h2><ul class='legend'>"
            f"<li>Estimator marks: {e(MARK_LEGEND)}. Never rank a bound or an estimate against an exact value "
            "as if they were the same kind of number.</li>"
            f"<li>{e(VALUES_RULE)}</li>"
            f"<li><span style='background:var(--best);font-weight:700;padding:0 4px'>shaded, bold</span>: "
            f"{e(BEST_RULE.format(alpha=alpha))}</li>"
            f"<li><span style='background:var(--worst);font-weight:700;padding:0 4px'>red, bold</span>: "
            f"{e(WORST_RULE)}</li>"
            "<li>Paired differences: for each likelihood column, every pair of models compared on the same test "
            "examples, the error covering the examples and the seeds; bold where the pair differs at the declared "
            "level after Holm's correction over all pairs. Spread between seeds: a ratio above 1 means another "
            "training run moves the number more than one run's ± says. The protocol under a table is what must "
            "match for two numbers to be compared (docs/evidence.md).</li>"
            "<li>Arrows: ↓ lower is better, ↑ higher is better (the metric's declaration). Units in brackets. "
            "Click a column header to sort.</li>"
            "<li>Samples: one job per model, the lowest seed that saved samples; drawn with a generator seeded "
            "by the job's seed, so the same run shows the same samples.</li></ul></section>")


def html_page(report: SummarisedRun) -> str:
    """The whole page (the ``html`` report format)."""
    nav = " ".join(f"<a href='#{slug(s.dataset)}'>{e(s.dataset)}</a>" for s in report.sections)
    extra = [f"<a href='#problems'>failed and skipped ({report.problem_count})</a>"] if report.problem_count else []
    extra.append("<a href='#environment'>environment</a>")
    line = report.headline
    parts = ["<!doctype html>", "<html lang='en'><head><meta charset='utf-8'>",
             "<meta name='viewport' content='width=device-width, initial-scale=1'>",
             f"<title>{e(report.title)}</title><style>{STYLE}</style></head><body>",
             f"<header><h1>{e(report.title)}</h1><p>{e(line)}</p><nav>{nav} {' '.join(extra)}</nav></header><main>"]
    if not report.sections:
        parts.append("<section><p class='note-line'>no results yet</p></section>")
    parts += [section_html(s) for s in report.sections]
    parts += [problems_html(report), environment_html(report), legend_html(report.alpha)]
    parts.append(f"</main><script>{SCRIPT}</script></body></html>")
    return "\n".join(p for p in parts if p)
