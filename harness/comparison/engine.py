"""One comparison of two summarised result sets, row by row: the engine ``compare`` and ``report A B`` share.

A :class:`Side` is a result set summarised per (model, dataset, metric identity) (:class:`Entry`), with
the declarations of its outputs. Rows are matched by identity, and each gets one :class:`RowComparison`:

1. on one side only: MISSING (only in the reference) or NEW (only in the current results);
2. in a dataset the caller excludes (other data or budgets behind the two sides): CHANGED, with why;
3. not comparable: unit, estimator or direction differ, the output's declared role or scaling
   (where both sides declare one) differ, or the measurements' protocols differ (a setting both sides
   recorded with different values: ``protocol ais_betas 100 vs 1000``): CHANGED. A direction known on one
   side only is that side's; none known is CHANGED too. A side that recorded no protocol (results made
   before protocols were stored) is compared as before, and the row's note says so;
4. a speed row (:func:`is_speed`, from the output's declaration): judged under the machine rule's plan
   for the machine that measured it (:mod:`harness.comparison.machines`), or NOT_COMPARED with a note when
   that plan cannot compare it;
5. otherwise decided by :func:`harness.comparison.rule.decide` with the row's floor (:func:`tolerance_for`),
   paired where both sides give per-example values on the same test examples (``Side.per_example``), and
   one-sidedly about the level held-out data scores where the output declares ``Judge.BEYOND_REFERENCE``
   (:mod:`harness.comparison.reference_level`).

A row's declaration is the current side's, else the reference's (the current results say what their
numbers are; a baseline's declarations may predate them).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping, Optional

from harness.comparison.machines import MachinePlans, SpeedPlan
from harness.comparison.results import Entry
from harness.comparison.reference_level import judge
from harness.comparison.rule import Decision, SignificanceTest
from harness.comparison.verdicts import Verdict
from harness.contracts import Output, Role, Scaling, Tolerance, UserError
from harness.formatting import setting

# The floor of a measurement that neither side declares.
UNDECLARED_TOLERANCE = Tolerance(relative=0.05)


def is_speed(declaration: Optional[Output]) -> bool:
    """Whether a row is a speed row: its output declares role speed. A row whose output is not declared
    is not one (its estimator mark says nothing about what the number is)."""
    return declaration is not None and declaration.role == Role.SPEED


@dataclass
class Side:
    """One side of a comparison: entries by (model, dataset, metric identity), and declarations by
    measurement name. ``name``: what notes call the side (``the baseline``, ``A``). ``per_example``:
    an entry's per-example values over its seeds (:class:`harness.evidence.PerExample`) or None, where
    the side can give them (a results directory: :meth:`harness.comparison.ResultsSet.per_example`)."""

    entries: Mapping[tuple, Entry]
    outputs: Mapping[str, Output]
    name: str = ""
    per_example: Optional[Callable] = None


@dataclass
class RowComparison:
    """The comparison of one (model, dataset, metric identity)."""

    verdict: Verdict
    model: str
    dataset: str
    id: str
    unit: str = ""
    reference: Optional[Entry] = None
    current: Optional[Entry] = None
    decision: Optional[Decision] = None
    tolerance: Optional[Tolerance] = None
    note: str = ""
    speed: bool = False
    normalised: Optional[Entry] = None  # the current entry as it would read on the reference's machine
    paired_difference: Optional[object] = None  # harness.evidence.PairedDifference (current - reference)

    @property
    def key(self) -> tuple:
        return (self.model, self.dataset, self.id)

    @property
    def paired(self) -> bool:
        """Whether the row was judged paired (per-example values of both sides on the same examples)."""
        return self.decision is not None and self.decision.test == SignificanceTest.PAIRED


def declaration(metric: str, current: Side, reference: Side) -> Optional[Output]:
    """A row's declaration: the current side's, else the reference's, else None."""
    return current.outputs.get(metric) or reference.outputs.get(metric)


def tolerance_for(entry: Entry, declared: Optional[Output], overrides: Optional[Mapping] = None) -> Tolerance:
    """A row's floor: an override (by identity or name), else the tolerance its output declares, else 5%."""
    if overrides and (entry.id in overrides or entry.metric in overrides):
        return overrides.get(entry.id, overrides.get(entry.metric))
    return declared.tolerance if declared is not None else UNDECLARED_TOLERANCE


def _scaling(metric: str, current: Side, reference: Side) -> Optional[Scaling]:
    """How a speed row scales with machine speed: the first side that declares it says."""
    for side in (current, reference):
        out = side.outputs.get(metric)
        if out is not None and out.scaling is not None:
            return out.scaling
    return None


def _differences(ref: Entry, cur: Entry, current: Side, reference: Side) -> list:
    """What makes two entries of one row incomparable (see the module doc, step 3)."""
    changed = [f"{what} {getattr(ref, attr)!s} -> {getattr(cur, attr)!s}"
               for what, attr in (("unit", "unit"), ("estimator", "estimator"), ("direction", "higher_is_better"))
               if getattr(ref, attr) is not None and getattr(cur, attr) is not None
               and getattr(ref, attr) != getattr(cur, attr)]
    if ref.higher_is_better is None and cur.higher_is_better is None:
        changed.append("direction unknown")
    a, b = reference.outputs.get(ref.metric), current.outputs.get(cur.metric)
    if a is not None and b is not None:
        if a.role != b.role:
            changed.append(f"role {a.role} -> {b.role}")
        if a.scaling is not None and b.scaling is not None and a.scaling != b.scaling:
            changed.append(f"scaling {a.scaling} -> {b.scaling}")
    changed += protocol_differences(ref.protocol, cur.protocol)
    return changed


def protocol_differences(reference: Optional[Mapping], current: Optional[Mapping]) -> list:
    """``protocol KEY A vs B`` for every setting both protocols record with different values (a setting
    recorded on one side only, or a side without a protocol, is no evidence of a difference)."""
    if reference is None or current is None:
        return []
    return [f"protocol {key} {setting(reference[key])} vs {setting(current[key])}"
            for key in sorted(set(reference) & set(current)) if reference[key] != current[key]]


def _unrecorded(ref: Entry, cur: Entry, reference: Side, current: Side) -> str:
    """The note of a row a side recorded no protocol for (compared as before), else ""."""
    missing = [side.name or fallback for side, entry, fallback in ((reference, ref, "the reference"),
                                                                    (current, cur, "the current results"))
               if entry.protocol is None]
    return f"protocol not recorded in {' and '.join(missing)}" if missing else ""


def _paired(ref: Entry, cur: Entry, reference: Side, current: Side):
    """The paired difference of the current entry against the reference, where both sides give per-example
    values on the same test examples; else None."""
    if reference.per_example is None or current.per_example is None:
        return None
    a, b = current.per_example(cur), reference.per_example(ref)
    if a is None or b is None:
        return None
    from harness.evidence import paired_difference

    try:
        return paired_difference(a, b)
    except UserError:  # evaluated on other examples: nothing to pair
        return None


def compare_sides(reference: Side, current: Side, plan: SpeedPlan | MachinePlans, alpha: float,
                  overrides: Optional[Mapping] = None, excluded: Optional[Mapping] = None,
                  speed_note: str = "speed not compared") -> list:
    """One :class:`RowComparison` per identity on either side, sorted by identity (see the module doc).

    ``overrides``: floors by identity or measurement name; ``excluded``: dataset -> why its rows are
    not comparable; ``speed_note``: the note of a speed row the plan does not compare."""
    excluded = excluded or {}
    rows = []
    whole = plan
    for key in sorted(set(reference.entries) | set(current.entries)):
        plan = whole.for_row(key)  # the plan of the machine that measured this row
        model, dataset, ident = key
        ref, cur = reference.entries.get(key), current.entries.get(key)
        either = cur or ref
        declared = declaration(either.metric, current, reference)
        row = RowComparison(Verdict.UNCHANGED, model, dataset, ident, (ref or cur).unit, ref, cur,
                            speed=is_speed(declared))
        rows.append(row)
        if ref is None or cur is None:
            row.verdict = Verdict.NEW if ref is None else Verdict.MISSING
            continue
        if dataset in excluded:
            row.verdict, row.note = Verdict.CHANGED, excluded[dataset]
            continue
        changed = _differences(ref, cur, current, reference)
        if changed:
            row.verdict, row.note = Verdict.CHANGED, "; ".join(changed)
            continue
        unrecorded = _unrecorded(ref, cur, reference, current)
        higher_is_better = bool(ref.higher_is_better if ref.higher_is_better is not None else cur.higher_is_better)
        tol = tolerance_for(cur, declared, overrides)
        if not row.speed:
            row.paired_difference = _paired(ref, cur, reference, current)
            row.decision, note = judge(ref, cur, declared, higher_is_better, tol, alpha, row.paired_difference)
            row.tolerance = tol
            row.verdict = row.decision.verdict if row.decision is not None else Verdict.NOT_COMPARED
            row.note = "; ".join(n for n in (note, unrecorded) if n)
            continue
        scaling = _scaling(ref.metric, current, reference)
        if not plan.comparable(scaling):
            row.verdict, row.note = Verdict.NOT_COMPARED, plan.row_note(scaling) if plan.compared else speed_note
            continue
        row.decision = plan.judge(ref, cur, scaling, higher_is_better, tol, alpha)
        row.verdict, row.tolerance = row.decision.verdict, plan.tolerance(tol, scaling)
        row.note = "; ".join(n for n in (plan.row_note(scaling), unrecorded) if n)
        normalised = plan.normalise(cur, scaling)
        row.normalised = normalised if normalised is not cur else None
    return rows
