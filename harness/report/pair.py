"""Two runs side by side (``report DIR_A DIR_B``): per (dataset, model, metric identity) both
summaries, the change and whether it is significant, decided by the regression gate's own rule
(:func:`harness.regression.rule.decide` with the tolerance the metric declares: worse or better only
beyond the tolerance floor *and* the seeds' noise, one-sided Welch or z test at ``alpha``).

Cells are not compared (and say why) when the runs used other profiles or other data for the
dataset, or when a row's unit, estimator or direction differs between the runs. Speed cells follow the
gate's machine rule (:mod:`harness.regression.speed`), A's machine standing for the baseline's: as
measured when both runs come from the same machine, B's figures normalised by the two calibrations
(a floor wider by the machine spread) when they come from different ones, not compared when a run
records no machine or no calibration.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Mapping, Optional

from harness.formatting import error, number, value_with_error
from harness.report.tables import MARKS, column_for

WORSE, BETTER, UNCHANGED = "worse", "better", "unchanged"
ONLY_A, ONLY_B, NOT_COMPARABLE = "only in A", "only in B", "not comparable"


@dataclass
class PairCell:
    a: Optional[object]  # harness.regression.Entry
    b: Optional[object]
    verdict: str
    decision: Optional[object] = None  # harness.regression.Decision
    tolerance: Optional[object] = None
    note: str = ""
    normalised: Optional[object] = None  # B's entry as it would read on A's machine (speed, across machines)

    def value_text(self, entry, integer: bool = False, sep: str = " ± ") -> str:
        if entry is None:
            return "-"
        text = value_with_error(entry.mean, entry.stderr, integer, sep)
        mark = MARKS.get(entry.estimator, "")
        return f"{text} ({mark})" if mark else text

    def change_text(self) -> str:
        """``+0.46 (+12.6%)``, or ``x0.5`` for a ratio tolerance (speed)."""
        d = self.decision
        if d is None:
            return ""
        if self.tolerance is not None and self.tolerance.ratio and math.isfinite(d.ratio):
            return f"x{d.ratio:.3g}" + (" (normalised)" if self.normalised is not None else "")
        rel = f" ({100 * d.ratio - 100:+.1f}%)" if math.isfinite(d.ratio) and self.a.mean != 0 else ""
        return f"{'+' if d.delta >= 0 else ''}{number(d.delta)}{rel}"

    def p_text(self) -> str:
        d = self.decision
        if d is None:
            return ""
        if d.test in ("floor-only", "no-spread"):
            return d.test
        p = d.p_worse if self.verdict == WORSE else d.p_better if self.verdict == BETTER else min(d.p_worse,
                                                                                                  d.p_better)
        return f"p={error(p) if p >= 1e-3 else f'{p:.0e}'} ({d.test})"

    def as_dict(self) -> dict:
        out = {"verdict": self.verdict, "note": self.note}
        for side in ("a", "b"):
            e = getattr(self, side)
            out[side] = None if e is None else {"mean": e.mean, "stderr": e.stderr, "n_seeds": e.n_seeds,
                                                "estimator": e.estimator, "seeds": e.seeds}
        d = self.decision
        if d is not None:
            out.update(delta=d.delta, ratio=d.ratio if math.isfinite(d.ratio) else None, p_worse=d.p_worse,
                       p_better=d.p_better, test=d.test, beyond_floor=d.beyond_floor)
        if self.tolerance is not None:
            out["tolerance"] = self.tolerance.describe()
        if self.normalised is not None:
            out["normalised"] = {"mean": self.normalised.mean, "stderr": self.normalised.stderr}
        return out


@dataclass
class PairTable:
    dataset: str
    models: list
    columns: list  # [Column]
    cells: dict  # (model, label) -> PairCell
    note: str = ""  # why the dataset is not compared, if it is not

    def counts(self) -> dict:
        out: dict = {}
        for c in self.cells.values():
            out[c.verdict] = out.get(c.verdict, 0) + 1
        return out


@dataclass
class Pair:
    a: str
    b: str
    alpha: float
    tables: dict  # dataset -> PairTable
    notes: list = field(default_factory=list)
    speed: Optional[dict] = None  # how speed cells were compared: mode, summary, machines, factor

    def to_dict(self) -> dict:
        rows = []
        for dataset, table in self.tables.items():
            for col in table.columns:
                for model in table.models:
                    cell = table.cells.get((model, col.label))
                    if cell is not None:
                        rows.append({"dataset": dataset, "model": model, "metric": col.label, "unit": col.unit,
                                     **cell.as_dict()})
        counts: dict = {}
        for row in rows:
            counts[row["verdict"]] = counts.get(row["verdict"], 0) + 1
        return {"a": self.a, "b": self.b, "alpha": self.alpha, "notes": self.notes, "speed": self.speed,
                "counts": counts, "rows": rows}


def _mismatches(ra, rb) -> tuple:
    """(notes, datasets not comparable -> why)."""
    notes, bad = [], {}
    if ra.profiles != rb.profiles:
        why = (f"profiles differ: A {', '.join(ra.profiles) or '-'}, B {', '.join(rb.profiles) or '-'}; "
               "numbers made with other budgets are not compared")
        notes.append(why)
        for d in set(ra.rows["dataset"]) | set(rb.rows["dataset"]):
            bad[d] = why
    for name in sorted(set(ra.datasets) & set(rb.datasets)):
        if ra.datasets[name] != rb.datasets[name]:
            why = (f"dataset {name!r} differs between the runs "
                   f"(hash {ra.datasets[name][:12]} vs {rb.datasets[name][:12]})")
            notes.append(why)
            bad.setdefault(name, why)
    if ra.seeds == rb.seeds and ra.seeds:
        notes.append(f"both runs used seeds {', '.join(map(str, ra.seeds))}: the test assumes independent runs")
    for model in sorted(set(ra.hparams) & set(rb.hparams)):
        if ra.hparams[model] != rb.hparams[model]:
            notes.append(f"hyperparameters of {model} differ between the runs")
    return notes, bad


def _speed_plan(ra, rb):
    """The machine rule with A's machine as the baseline's: (plan, the sentence that says how speed
    cells were compared)."""
    from harness.machine import describe
    from harness.regression.speed import NORMALISED, SAME_MACHINE, plan_speed, results_machine

    mine = results_machine(ra)
    doc = {"machines": {mine.id: {"fingerprint": mine.fingerprint, "calibration": mine.calibration}}} if mine.id else {}
    plan = plan_speed(doc, rb)
    if plan.mode == SAME_MACHINE:
        return plan, f"Speed: both runs come from the same machine, {plan.results.describe()}: compared as measured."
    if plan.mode == NORMALISED:
        return plan, (f"Speed: the runs come from different machines, A {mine.describe()} and B "
                      f"{plan.results.describe()}. The calibrations say B's machine is {plan.factor.describe()} "
                      f"as fast; B's rates are divided and its durations multiplied by that factor, and such a "
                      f"cell is worse or better only beyond its floor times {plan.spread:g}. Bytes and FLOP counts "
                      "are compared as measured.")
    if len(mine.ids) > 1 or len(plan.results.ids) > 1:
        why = "a run holds results of several machines"
    elif mine.id is None or plan.results.id is None:
        why = "a run records no machine (a CSV, or a store written before runs recorded their machine)"
    else:
        why = (f"the runs come from different machines, A `{mine.id}` ({describe(mine.fingerprint)}) and B "
               f"{plan.results.describe()}, without calibrations that can be set against each other")
    return plan, f"Speed: not compared; {why}."


def compare_runs(a, b, outputs: Optional[Mapping] = None, alpha: Optional[float] = None) -> Pair:
    """Compare results directory (or results.csv) ``b`` with ``a`` cell by cell (see the module doc)."""
    from harness.regression import DEFAULT_ALPHA, decide, load_results, summarise, tolerance_for
    from harness.contracts import UserError
    from harness.regression.speed import NORMALISED, SAME_MACHINE, is_speed

    alpha = DEFAULT_ALPHA if alpha is None else alpha
    if not 0 < alpha < 1:
        raise UserError(f"alpha must be between 0 and 1, not {alpha}")
    ra, rb = load_results(a, outputs), load_results(b, outputs)
    notes, bad = _mismatches(ra, rb)
    plan, speed_note = _speed_plan(ra, rb)
    notes.append(speed_note)
    declared = {**ra.outputs, **rb.outputs}
    a_outputs = {name: o.as_dict() for name, o in ra.outputs.items()}
    ea = {e.key: e for e in summarise(ra)}
    eb = {e.key: e for e in summarise(rb)}
    tables: dict = {}
    for key in sorted(set(ea) | set(eb)):
        model, dataset, label = key
        ca, cb = ea.get(key), eb.get(key)
        ref = cb or ca
        col = column_for(label, ref.metric, ref.unit, ref.higher_is_better, declared, ref.estimator)
        table = tables.setdefault(dataset, PairTable(dataset, [], [], {}, bad.get(dataset, "")))
        if col.label not in {c.label for c in table.columns}:
            table.columns.append(col)
        if model not in table.models:
            table.models.append(model)
        if ca is None or cb is None:
            table.cells[(model, label)] = PairCell(ca, cb, ONLY_B if ca is None else ONLY_A)
            continue
        if dataset in bad:
            table.cells[(model, label)] = PairCell(ca, cb, NOT_COMPARABLE, note=bad[dataset])
            continue
        changed = [f"{what} {getattr(ca, attr)} -> {getattr(cb, attr)}"
                   for what, attr in (("unit", "unit"), ("estimator", "estimator"), ("direction", "higher_is_better"))
                   if getattr(ca, attr) != getattr(cb, attr)]
        if changed or ca.higher_is_better is None:
            why = "; ".join(changed) or "direction unknown"
            table.cells[(model, label)] = PairCell(ca, cb, NOT_COMPARABLE, note=why)
            continue
        tol = tolerance_for(cb, rb.outputs, a_outputs)
        judged, note = cb, ""
        if is_speed(ca):
            if not plan.compared:
                table.cells[(model, label)] = PairCell(ca, cb, NOT_COMPARABLE, note=speed_note)
                continue
            judged, note = plan.normalise(cb, unit=ca.unit), plan.row_note(ca.unit)
            decision = plan.judge(ca.stats, cb, ca.unit, bool(ca.higher_is_better), tol, alpha)
            tol = plan.tolerance(tol, ca.unit)
        else:
            decision = decide(ca.stats, judged.stats, bool(ca.higher_is_better), tol, alpha)
        table.cells[(model, label)] = PairCell(ca, cb, decision.verdict, decision, tol, note,
                                               judged if judged is not cb else None)
    for table in tables.values():
        table.columns.sort(key=lambda c: (c.order, c.label))
        table.models.sort()
    speed = {"mode": plan.mode, "summary": speed_note, "a_machine": plan.section_id,
             "b_machine": plan.results.id, "same_machine": plan.mode == SAME_MACHINE,
             "factor": plan.factor.factor if plan.compared and plan.factor else None,
             "spread": plan.spread if plan.mode == NORMALISED else None}
    return Pair(str(a), str(b), alpha, dict(sorted(tables.items())), notes, speed)
