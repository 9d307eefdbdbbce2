"""Two runs side by side (``report DIR_A DIR_B``): A is the reference side and B the current side of
the comparison engine (:func:`harness.comparison.compare_sides`) that ``compare`` uses too, so each cell
is decided as the gate would decide B against a baseline made of A: worse or better only beyond the
tolerance floor its metric declares *and* the seeds' noise (one-sided Welch or z test at ``alpha``).

Where both runs kept per-example values of a cell on the same test examples, the test is paired (the
difference of the two runs' per-example means with :func:`harness.evidence.paired_difference`'s error);
the notes say how many cells were.

Cells are not compared (and say why) when the runs used other profiles or other data for the
dataset, or when a row's unit, estimator, direction, declared role or scaling, or protocol (a setting
that changes what the number means: ``protocol ais_betas 100 vs 1000``) differs between the runs. Speed cells follow the machine rule (:mod:`harness.comparison.machines`), A's machine standing for
the baseline's: as measured when both runs come from the same machine, B's rates and durations
normalised by the two calibrations (a floor wider by the machine spread) when they come from different
ones, not compared when a run records no machine or no calibration, nor across machines for an output
that does not declare how it scales with machine speed. When a run's rows were measured on several
machines (a cluster's nodes), each cell is judged by the machines that measured its two figures.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Mapping, Optional

from harness.comparison import (DEFAULT_ALPHA, RowComparison, SignificanceTest, Side, SpeedMode, Verdict,
                                compare_sides, load_results, plan_pair, results_machine, summarise)
from harness.contracts import UserError
from harness.formatting import error, number, value_with_error
from harness.machine import describe
from harness.report.tables import MARKS, column_for

# How this view names the engine's verdicts that are not worse, better or unchanged.
ONLY_A, ONLY_B, NOT_COMPARABLE = "only in A", "only in B", "not comparable"
LABELS = {Verdict.MISSING: ONLY_A, Verdict.NEW: ONLY_B, Verdict.CHANGED: NOT_COMPARABLE,
          Verdict.NOT_COMPARED: NOT_COMPARABLE}


@dataclass
class PairCell:
    """One cell: the engine's row, A its reference and B its current side."""

    row: RowComparison

    @property
    def a(self):
        return self.row.reference

    @property
    def b(self):
        return self.row.current

    @property
    def verdict(self) -> Verdict:
        return self.row.verdict

    @property
    def label(self) -> str:
        """The verdict as this view names it (``only in A``, ``not comparable``, ``worse``, ...)."""
        return LABELS.get(self.row.verdict, self.row.verdict.value)

    @property
    def decision(self):
        return self.row.decision

    @property
    def tolerance(self):
        return self.row.tolerance

    @property
    def note(self) -> str:
        return self.row.note

    @property
    def normalised(self):
        """B's entry as it would read on A's machine (speed, across machines)."""
        return self.row.normalised

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
        if d.test in (SignificanceTest.FLOOR_ONLY, SignificanceTest.NO_SPREAD):
            return d.test
        p = (d.p_worse if self.verdict == Verdict.WORSE else d.p_better if self.verdict == Verdict.BETTER
             else min(d.p_worse, d.p_better))
        return f"p={error(p) if p >= 1e-3 else f'{p:.0e}'} ({d.test})"

    @property
    def paired(self) -> bool:
        return self.row.paired

    def as_dict(self) -> dict:
        out = {"verdict": self.label, "note": self.note, "paired": self.paired}
        for side in ("a", "b"):
            e = getattr(self, side)
            out[side] = None if e is None else {"mean": e.mean, "stderr": e.stderr, "n_seeds": e.n_seeds,
                                                "estimator": e.estimator, "seeds": e.seeds, "protocol": e.protocol}
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
            out[c.label] = out.get(c.label, 0) + 1
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


def _speed_note(plan, a) -> str:
    """The sentence that says how speed cells were compared (``a``: A's machine)."""
    b = plan.current
    if plan.mode == SpeedMode.PER_MACHINE:
        return plan.describe()
    if plan.mode == SpeedMode.SAME_MACHINE:
        return f"Speed: both runs come from the same machine, {b.describe()}: compared as measured."
    if plan.mode == SpeedMode.NORMALISED:
        return (f"Speed: the runs come from different machines, A {a.describe()} and B {b.describe()}. The "
                f"calibrations say B's machine is {plan.factor.describe()} as fast; B's rates are divided and its "
                f"durations multiplied by that factor, and such a cell is worse or better only beyond its floor "
                f"times {plan.spread:g}. Bytes and FLOP counts are compared as measured; a figure whose metric "
                "does not declare how it scales with machine speed is not compared.")
    if len(a.ids) > 1 or len(b.ids) > 1:
        why = "a run holds results of several machines"
    elif a.id is None or b.id is None:
        why = "a run records no machine (a CSV, or a store written before runs recorded their machine)"
    else:
        why = (f"the runs come from different machines, A `{a.id}` ({describe(a.fingerprint)}) and B "
               f"{b.describe()}, without calibrations that can be set against each other")
    return f"Speed: not compared; {why}."


def _evidence_notes(rows: list) -> list:
    """Which cells were judged paired, and how many were compared without a recorded protocol."""
    notes = []
    paired = [r for r in rows if r.paired]
    if paired:
        notes.append(f"{len(paired)} cell(s) judged paired on per-example values of the same test examples "
                     f"({', '.join(sorted({r.id for r in paired}))}); the others from the summaries over seeds")
    unrecorded = sum("protocol not recorded" in r.note for r in rows)
    if unrecorded:
        notes.append(f"{unrecorded} cell(s) compared without a recorded protocol on one side (made before protocols "
                     "were stored): a change of evaluation settings would not show there")
    return notes


def compare_runs(a, b, outputs: Optional[Mapping] = None, alpha: Optional[float] = None) -> Pair:
    """Compare results directory (or results.csv) ``b`` with ``a`` cell by cell (see the module doc)."""
    alpha = DEFAULT_ALPHA if alpha is None else alpha
    if not 0 < alpha < 1:
        raise UserError(f"alpha must be between 0 and 1, not {alpha}")
    ra, rb = load_results(a, outputs), load_results(b, outputs)
    notes, bad = _mismatches(ra, rb)
    plan = plan_pair(ra, rb)
    speed_note = _speed_note(plan, results_machine(ra))
    notes.append(speed_note)
    declared = {**ra.outputs, **rb.outputs}
    reference = Side({e.key: e for e in summarise(ra)}, ra.outputs, name="A", per_example=ra.per_example)
    current = Side({e.key: e for e in summarise(rb)}, rb.outputs, name="B", per_example=rb.per_example)
    tables: dict = {}
    rows = compare_sides(reference, current, plan, alpha, excluded=bad, speed_note=speed_note)
    notes += _evidence_notes(rows)
    for row in rows:
        entry = row.current or row.reference
        col = column_for(row.id, entry.metric, entry.unit, entry.higher_is_better, declared)
        table = tables.setdefault(row.dataset, PairTable(row.dataset, [], [], {}, bad.get(row.dataset, "")))
        if col.label not in {c.label for c in table.columns}:
            table.columns.append(col)
        if row.model not in table.models:
            table.models.append(row.model)
        table.cells[(row.model, row.id)] = PairCell(row)
    for table in tables.values():
        table.columns.sort(key=lambda c: (c.order, c.label))
        table.models.sort()
    speed = {"mode": plan.mode, "summary": speed_note, "a_machine": plan.reference_id,
             "b_machine": plan.current.id, "same_machine": plan.mode == SpeedMode.SAME_MACHINE,
             "factor": plan.factor.factor if plan.compared and plan.factor else None,
             "spread": plan.spread if plan.mode in (SpeedMode.NORMALISED, SpeedMode.PER_MACHINE) else None,
             **({"machines": plan.as_dicts()} if plan.mode == SpeedMode.PER_MACHINE else {})}
    return Pair(str(a), str(b), alpha, dict(sorted(tables.items())), notes, speed)
