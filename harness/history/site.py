"""The history's static site: ``index.html`` and one page per dataset, self-contained (styles and charts
inline as SVG images; nothing fetched), so it can be opened from disk or published as it is.

The index lists the regressions (newest first, still worse or recovered), the datasets, the machines
and the commits. A dataset's page has a chart per metric with every model overlaid over commits
(:mod:`harness.history.charts`): quality metrics first, then speed figures, one chart per machine (or
one normalised chart); under each chart what changed in its protocol and where, its steps, and a
table of its values.
"""

from __future__ import annotations

import html
import math
import re
from pathlib import Path

from harness.history.charts import direction_label, history_chart
from harness.history.regressions import all_steps
from harness.history.series import History

e = html.escape

STYLE = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;color:#1d1d1f;margin:0;
 background:#fafafa}
header{background:#fff;border-bottom:1px solid #d9d9de;padding:1em 2em}
header h1{margin:0 0 .2em;font-size:1.4em}
header p{margin:.2em 0;color:#666}
main{padding:0 2em 2em;max-width:1400px}
section{background:#fff;border:1px solid #d9d9de;border-radius:6px;margin:1.2em 0;padding:.8em 1.4em}
h2{font-size:1.2em;margin:.2em 0 .5em}
.charts{display:flex;flex-wrap:wrap;gap:12px;align-items:flex-start}
figure{margin:0;border:1px solid #d9d9de;border-radius:4px;padding:6px;max-width:640px;background:#fff}
figure img{display:block;max-width:100%;height:auto}
figcaption{font-size:12px;color:#555;margin-top:4px}
table{border-collapse:collapse;margin:.3em 0 .8em;font-size:13px}
th,td{border:1px solid #d9d9de;padding:3px 7px;text-align:left}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
code{font-size:12px}
.worse{color:#b71c1c;font-weight:600}
.recovered{color:#666}
"""


def page_name(dataset: str) -> str:
    return "dataset-" + re.sub(r"[^A-Za-z0-9_.-]+", "-", dataset) + ".html"


def _fmt(value, se=None) -> str:
    if value is None or not math.isfinite(value):
        return ""
    text = f"{value:.5g}"
    return text + (f" ± {se:.2g}" if se is not None and math.isfinite(se) else "")


def _page(title: str, subtitle: str, body: str) -> str:
    return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{e(title)}</title>"
            f"<style>{STYLE}</style></head>\n<body><header><h1>{e(title)}</h1><p>{subtitle}</p></header>"
            f"<main>\n{body}\n</main></body></html>\n")


def _table(head: list, rows: list) -> str:
    out = ["<table><thead><tr>" + "".join(f"<th>{e(h)}</th>" for h in head) + "</tr></thead><tbody>"]
    for row in rows:
        out.append("<tr>" + "".join(cell if cell.startswith("<td") else f"<td>{cell}</td>" for cell in row) + "</tr>")
    return "".join(out) + "</tbody></table>"


def _regressions_html(found: list, link: bool) -> str:
    rows = []
    for f in found:
        key = f.series.key
        name = e(key.dataset)
        if link:
            name = f'<a href="{page_name(key.dataset)}">{name}</a>'
        state = '<span class="worse">still worse</span>' if f.still_worse else '<span class="recovered">recovered</span>'
        rows.append([name, e(key.model), e(key.id), e(key.machine or ""),
                     f"<code>{e(f.good[:10])}..{e(f.bad[:10])}</code>", f'<td class="num">{_fmt(f.before, f.before_se)}</td>',
                     f'<td class="num">{_fmt(f.after, f.after_se)}</td>', e(f.change()),
                     f'<td class="num">{f.p:.2g}</td>', state])
    if not rows:
        return "<p>No step made a metric worse beyond its floor.</p>"
    return _table(["dataset", "model", "metric", "machine", "commits (good..bad)", "before", "after", "change",
                   "p", "now"], rows)


def _chart_group(history: History, group: list, steps: list) -> str:
    first = group[0]
    rec = first.latest
    machine = first.key.machine
    title = first.key.id + (f" on machine {machine}" if machine else "")
    if first.is_speed and machine is None and history.normalised_to:
        title += " (normalised to machine " + ", ".join(sorted(history.normalised_to.values())) + ")"
    mine = [f for f in steps if any(f.series is s for s in group)]
    image = history_chart(title, group, history.commits, mine, rec.get("unit") or "", rec.get("higher_is_better"))
    notes = [f"{e(direction_label(rec.get('higher_is_better')))}; error bars: standard error over seeds"]
    for s in group:
        for position, diff in s.protocol_changes():
            what = "; ".join(f"{e(k)}: {e(str(a))} → {e(str(b))}" for k, (a, b) in diff.items())
            notes.append(f'<span class="protocol-change">{e(s.key.model)}: protocol changed at '
                         f"<code>{e(history.commits[position].short)}</code> ({what})</span>")
    for f in mine:
        if f.worse is not None:
            verdict = "worse" if f.worse else "better"
            notes.append(f"{e(f.series.key.model)}: step {verdict} between <code>{e(f.good[:10])}</code> and "
                         f"<code>{e(f.bad[:10])}</code>: {_fmt(f.before)} → {_fmt(f.after)} (p {f.p:.2g})")
    values = [[f"<code>{e(history.commits[p.position].short)}</code>", e(s.key.model),
               f'<td class="num">{_fmt(p.mean, p.stderr)}</td>', f'<td class="num">{p.n_seeds}</td>']
              for s in group for p in s.points]
    alt = f"{title}: {', '.join(s.key.model for s in group)} over commits"
    return (f'<figure class="chart" data-metric="{e(first.key.id)}"><img src="{image.uri()}" width="{image.width}" '
            f'height="{image.height}" alt="{e(alt)}"><figcaption>{"<br>".join(notes)}<details><summary>values</summary>'
            f"{_table(['commit', 'model', 'mean ± se', 'seeds'], values)}</details></figcaption></figure>")


def dataset_page(history: History, dataset: str, steps: list) -> str:
    groups: dict = {}
    for key, s in history.series.items():
        if key.dataset == dataset:
            groups.setdefault((s.is_speed, key.id, key.machine or ""), []).append(s)
    parts = {False: [], True: []}
    for (speed, _, _), group in sorted(groups.items()):
        parts[speed].append(_chart_group(history, group, steps))
    body = [f'<section class="dataset" data-dataset="{e(dataset)}"><h2>Regressions on {e(dataset)}</h2>'
            + _regressions_html([f for f in steps if f.regression and f.series.key.dataset == dataset], False)
            + "</section>"]
    for speed, heading in ((False, "Quality"), (True, "Speed")):
        if parts[speed]:
            body.append(f'<section><h2>{heading}</h2><div class="charts">{"".join(parts[speed])}</div></section>')
    subtitle = f'<a href="index.html">all datasets</a> · {len(history.commits)} commits · ' \
               f"{len(history.sets)} record sets"
    return _page(f"{dataset}: metric history", subtitle, "\n".join(body))


def index_page(history: History, steps: list, source: str) -> str:
    found = sorted((f for f in steps if f.regression), key=lambda f: (-f.bad_position, f.series.key.dataset))
    datasets = [[f'<a href="{page_name(d)}">{e(d)}</a>',
                 f'<td class="num">{len({k.model for k in history.series if k.dataset == d})}</td>',
                 f'<td class="num">{len({k.id for k in history.series if k.dataset == d})}</td>']
                for d in history.datasets()]
    machines: dict = {}
    for s in history.sets:
        for mid, m in s.machines.items():
            machines[mid] = m.get("description") or ""
    commits = [[f'<td class="num">{c.position}</td>', f"<code>{e(c.short)}</code>", e(c.date or ""), e(c.subject or "")]
               for c in reversed(history.commits)]
    body = ("<section><h2>Regressions</h2>" + _regressions_html(found, True) + "</section>"
            + "<section><h2>Datasets</h2>" + _table(["dataset", "models", "metrics"], datasets) + "</section>"
            + "<section><h2>Machines</h2>" + _table(["id", "machine"], [[f"<code>{e(k)}</code>", e(v)]
                                                                        for k, v in sorted(machines.items())])
            + "</section><section><h2>Commits</h2>" + _table(["#", "commit", "date", "subject"], commits) + "</section>")
    subtitle = f"{e(source)} · {len(history.commits)} commits · {len(history.sets)} record sets"
    return _page("Metric history", subtitle, body)


def write_site(history: History, out, source: str, alpha: float, floor: bool = True) -> dict:
    """Write the site into ``out``: {"index": path, "pages": {dataset: path}}."""
    from harness.report import atomic_write

    out = Path(out)
    steps = all_steps(history, alpha, floor)
    pages = {}
    for dataset in history.datasets():
        pages[dataset] = out / page_name(dataset)
        atomic_write(pages[dataset], dataset_page(history, dataset, steps))
    index = out / "index.html"
    atomic_write(index, index_page(history, steps, source))
    return {"index": index, "pages": pages}
