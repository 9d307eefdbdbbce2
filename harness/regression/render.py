"""Markdown views of a comparison and of a baseline file (the numbers formatted as the report does)."""

from __future__ import annotations

import math
from typing import Optional

import pandas as pd

from harness.comparison import Entry, RowComparison, SignificanceTest, Verdict
from harness.formatting import number
from harness.regression.baseline import REFRESH_COMMANDS
from harness.regression.compare import VERDICT_ORDER, Comparison, seed_text
from harness.regression.speed import describe


def _cell(e: Optional[Entry]) -> str:
    if e is None:
        return "-"
    text = number(e.mean)
    if e.stderr:
        text += f" ± {number(e.stderr)}"
    return f"{text} (n={e.n_seeds})"


def _change(r: RowComparison) -> str:
    d = r.decision
    if d is None:
        return ""
    if r.tolerance is not None and r.tolerance.ratio:
        text = f"x{d.ratio:.3g}" if math.isfinite(d.ratio) else number(d.delta)
        return text + (" (normalised)" if r.normalised is not None else "")
    rel = f" ({100 * d.ratio - 100:+.1f}%)" if math.isfinite(d.ratio) else ""
    return f"{'+' if d.delta >= 0 else ''}{number(d.delta)}{rel}"


def _p(r: RowComparison) -> str:
    d = r.decision
    if d is None:
        return ""
    if d.test == SignificanceTest.FLOOR_ONLY:
        return "floor only"
    p = d.p_better if r.verdict == Verdict.BETTER else d.p_worse
    return f"{p:.2g} ({d.test})"


def _short(text: str, limit: int = 160) -> str:
    """Notes are cut for the table (the JSON output keeps them whole); pipes would break the table."""
    text = text.replace("|", "/").replace("\n", " ")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def render_markdown(cmp: Comparison, baseline_path: str = "", all_rows: bool = False) -> str:
    counts = cmp.counts
    failures = cmp.failures
    status = f"FAIL: {len(failures)} row(s) fail the gate" if failures else "PASS"
    doc = cmp.baseline
    versions = doc.get("versions", {})
    lines = [f"## Regression check: {status}", "",
             f"Baseline `{baseline_path or doc.get('source', '')}` (profile {doc['profile']}, seeds "
             f"{seed_text(doc.get('seeds', []))}, harness {versions.get('harness', '?')}, torch "
             f"{versions.get('torch', '?')}, made {doc.get('created', '?')}) against `{cmp.results.source}` "
             f"(seeds {seed_text(cmp.results.seeds)}).", "",
             f"A row is *worse* only when it moved the wrong way by more than its floor AND a one-sided test "
             f"(Welch's t across seeds; z with one seed; a paired t where both sides kept per-example values on the "
             f"same test examples) gives p < {cmp.alpha:g}. Speed rows compare ratios. A row whose protocol (the "
             "settings that change what the number means) differs is not comparable.", ""]
    if cmp.speed is not None:
        lines += [describe(cmp.speed, doc), ""]
    quiet = {Verdict.UNCHANGED, Verdict.NOT_COMPARED} | (set() if cmp.require_all_plugins else {Verdict.NOT_INSTALLED})
    shown = [r for r in cmp.rows if all_rows or r.verdict not in quiet]
    if shown:
        table = pd.DataFrame([{
            "verdict": r.verdict, "model": r.model, "dataset": r.dataset,
            "metric": f"{r.id} [{r.unit}]" if r.unit else r.id, "baseline": _cell(r.reference),
            "current": _cell(r.current), "change": _change(r),
            "floor": r.tolerance.describe() if r.tolerance else "", "p": _p(r), "note": _short(r.note),
        } for r in shown])
        if not table["note"].astype(bool).any():
            table = table.drop(columns="note")
        lines += [table.to_markdown(index=False), ""]
    summary = ", ".join(f"{counts[v]} {v}" for v in VERDICT_ORDER)
    lines.append(f"{len(cmp.rows)} rows: {summary}" + (" (missing rows allowed)" if cmp.allow_missing else "") + ".")
    absent = cmp.not_installed
    if absent:
        verdict = "fail the gate (--require-all-plugins)" if cmp.require_all_plugins else "do not fail the gate"
        lines += ["", f"Not installed (baseline rows that could not run here; they {verdict}):"]
        lines += [f"- {note}: {len(rows)} row(s)" for note, rows in sorted(absent.items())]
    if cmp.notes:
        lines += ["", "Notes:", *[f"- {n}" for n in cmp.notes]]
    if any(r.verdict != Verdict.FAILED for r in failures):  # a failed job needs a fix, not a new baseline
        lines += ["", "If a change is intended, refresh the baseline deliberately: `"
                  + REFRESH_COMMANDS.format(profile=doc["profile"], path=baseline_path or "reports/baseline/NAME.json")
                  + "` and commit it with a message that says why the numbers moved."]
    return "\n".join(lines) + "\n"


def render_baseline(doc: dict) -> str:
    """A Markdown view of a baseline document (``baseline show``)."""
    lines = [f"# baseline ({doc['profile']})", "",
             f"- created: {doc.get('created', '?')}", f"- source: {doc.get('source', '?')}",
             f"- seeds: {seed_text(doc.get('seeds', []))}"]
    for k, v in doc.get("versions", {}).items():
        lines.append(f"- {k}: {v}")
    lines += ["", "| dataset | hash |", "|:--|:--|"]
    lines += [f"| {d} | {(h or 'unknown')[:16]} |" for d, h in doc["datasets"].items()]
    owners = doc.get("owners", {}).get("models", {})
    lines += ["", "| model | family | plugin | hparams hash |", "|:--|:--|:--|:--|"]
    lines += [f"| {m} | {i.get('family', '')} | {owners.get(m, '?')} | {i.get('hparams_hash', 'unknown')} |"
              for m, i in doc.get("models", {}).items()]
    lines += ["", "## quality", "", _entry_table(doc["entries"])]
    for machine, section in doc.get("machines", {}).items():
        lines += ["", f"## speed on machine {machine}", "", f"- {section.get('description', '')}",
                  f"- created: {section.get('created', '?')}, seeds {seed_text(section.get('seeds', []))}"]
        workloads = (section.get("calibration") or {}).get("workloads", {})
        if workloads:
            lines.append("- calibration: " + ", ".join(f"{name} {1e3 * w['seconds']:.3g} ms"
                                                       for name, w in workloads.items()))
        else:
            lines.append("- calibration: none (compare never sets these figures against another machine's)")
        lines += ["", _entry_table(section.get("entries", []))]
    return "\n".join(lines) + "\n"


def _entry_table(entries: list) -> str:
    table = pd.DataFrame([{
        "dataset": e["dataset"], "model": e["model"], "metric": e["id"], "unit": e.get("unit", ""),
        "direction": "higher" if e["higher_is_better"] else "lower", "estimator": e.get("estimator", ""),
        "mean": number(e["mean"]), "stderr": number(e.get("stderr")), "seeds": e.get("n_seeds", 1),
    } for e in entries])
    return table.to_markdown(index=False) if not table.empty else "(no entries)"
