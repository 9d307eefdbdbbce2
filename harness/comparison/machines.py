"""The machine rule: whether, and how, the speed figures of two result sets are compared.

Speed figures are only comparable as they stand on the same machine (:mod:`harness.machine`: a
fingerprint names a machine, a calibration times fixed workloads on it). The reference side offers
the machines its speed figures come from (a baseline: one section per machine; a run: its machine),
and :func:`plan_speed` chooses one of three modes:

- **same machine**: the reference has figures of the current results' machine: rows are compared as
  measured, with the floors their metrics declare;
- **normalised**: otherwise, against the reference machine of the same device type nearest in speed
  that has a calibration, when the current results have one too. The machine speed factor ``s`` (how
  many times faster the current machine ran the calibration workloads, :func:`harness.machine.speed_factor`)
  divides a figure its output declares a rate (:attr:`harness.Scaling.RATE`) and multiplies one declared
  a duration; such a row is worse only beyond its declared floor times ``spread`` (:data:`MACHINE_SPREAD`,
  measured in docs/regression.md). ``s`` is the geometric mean of the workloads' own factors, and which of
  them a model's work resembles is not known: where they disagree, a row is judged *worse* only if it is
  worse under every workload's factor and *better* only if better under every one; its normalised figure
  is still the one under ``s``. A figure declared not to depend on the machine's speed (bytes, FLOP
  counts, fractions: scaling ``none``) is compared as measured. A speed output that does not declare its
  scaling is not compared across machines at all;
- **not compared**: no reference machine can be set against the current one (:class:`WhyNotCompared`).

A figure belongs to the machine that measured it. A job that ran on a cluster node records that node's
machine and calibration (job details ``machine`` and ``node``, docs/cluster.md); any other job ran on
the machine its run records. When every row of the current results (and of a run on the reference side)
comes from one machine, one plan serves them all. When they come from several, each row is judged
under the plan of its own machine (:class:`MachinePlans`, mode **per machine**): a row measured on a
machine the reference has figures of is compared as measured, one measured on another is normalised by
its own machine's calibration. A row whose seeds ran on machines of different kinds stands for a machine
of its own: their ids joined by ``+``, with the median of their calibrations (one per seed).
:mod:`harness.comparison.measured` reads which machine measured what and builds the plans.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import Mapping, Optional

from harness.comparison.rule import Decision, decide
from harness.comparison.verdicts import Verdict
from harness.contracts import Scaling, Tolerance, UserError
from harness.machine import SpeedFactor, describe, speed_factor

# The floor of a rate or duration compared across machines is its declared floor times this: the spread
# of calibration-normalised ratios of the built-in models between two machine settings
# (docs/regression.md, "How wide across machines").
MACHINE_SPREAD = 1.2

# How a figure moves with the machine speed factor: rates with it, durations against it.
_EXPONENT = {Scaling.RATE: 1, Scaling.DURATION: -1, Scaling.NONE: 0}

UNDECLARED_SCALING = ("its output does not declare how it scales with machine speed (Output.scaling: rate, "
                      "duration or none), so it is compared only with figures of the same machine")


class SpeedMode(str, Enum):
    """How a comparison treats speed rows (see the module doc)."""

    SAME_MACHINE = "same-machine"
    NORMALISED = "normalised"
    NOT_COMPARED = "not-compared"
    PER_MACHINE = "per-machine"  # the current rows come from several machines: each row by its own

    def __str__(self) -> str:
        return self.value


class WhyNotCompared(str, Enum):
    """Why a plan compares no speed row."""

    QUALITY_ONLY = "quality-only"  # the caller asked for quality rows only
    NO_REFERENCE_FIGURES = "no-reference-figures"  # the reference holds no speed figures
    CURRENT_RECORDS_NO_MACHINE = "current-records-no-machine"  # a CSV, or a store older than machine records
    NO_CALIBRATION = "no-calibration"  # the current results carry no usable calibration
    REFERENCE_RECORDS_NO_MACHINE = "reference-records-no-machine"  # and none of its figures has a calibration
    NO_COMPARABLE_MACHINE = "no-comparable-machine"  # other devices, or calibrations that cannot be set side by side

    def __str__(self) -> str:
        return self.value


@dataclass
class MachineSide:
    """The machine of a result set, of its rows (or of a baseline's section): its id (None when unknown or
    when several machines made the results), fingerprint and calibration (pooled over nodes and runs)."""

    id: Optional[str]
    fingerprint: dict = field(default_factory=dict)
    calibration: Optional[dict] = None
    ids: list = field(default_factory=list)  # every machine id seen

    @property
    def device(self) -> Optional[str]:
        """The device type (``cpu``, ``cuda``) from the fingerprint, else from the calibration."""
        return self.fingerprint.get("device") or ((self.calibration or {}).get("device") or "").split(":")[0] or None

    def describe(self) -> str:
        if len(self.ids) > 1:
            return f"{len(self.ids)} machines ({', '.join(self.ids)})"
        if self.id is None:
            return "an unknown machine"
        return f"`{self.id}` ({describe(self.fingerprint)})"


@dataclass
class SpeedPlan:
    """How a comparison treats speed rows (see the module doc)."""

    mode: SpeedMode
    current: MachineSide
    why: Optional[WhyNotCompared] = None  # when NOT_COMPARED
    reference_id: Optional[str] = None  # the reference machine compared with
    reference: Optional[MachineSide] = None
    factor: Optional[SpeedFactor] = None  # current machine's speed / reference machine's
    spread: float = MACHINE_SPREAD
    references: list = field(default_factory=list)  # ids of every reference machine offered
    candidates: int = 0  # reference machines that could be normalised against (the nearest was chosen)

    @property
    def compared(self) -> bool:
        return self.mode in (SpeedMode.SAME_MACHINE, SpeedMode.NORMALISED)

    def for_row(self, key: tuple) -> "SpeedPlan":
        """The plan of one row: this one, for every row (see :class:`MachinePlans`)."""
        return self

    @property
    def reference_ids(self) -> list:
        """The reference machines whose figures the rows are set against."""
        return [self.reference_id] if self.compared else []

    @property
    def current_machine_in_reference(self) -> Optional[bool]:
        """Whether the reference holds figures of the current machine (None: the current results
        record no single machine)."""
        return None if self.current.id is None else self.current.id in self.references

    def comparable(self, scaling: Optional[Scaling]) -> bool:
        """Whether a speed row of this scaling is compared under this plan: on the same machine any
        row; across machines only a row that declares its scaling."""
        return self.mode == SpeedMode.SAME_MACHINE or (self.mode == SpeedMode.NORMALISED and scaling is not None)

    def _moves(self, scaling: Optional[Scaling]) -> bool:
        return self.mode == SpeedMode.NORMALISED and _EXPONENT.get(scaling, 0) != 0

    def normalise(self, entry, scaling: Optional[Scaling], factor: Optional[float] = None):
        """The current entry as it would read on the reference machine (NORMALISED only), by the machine
        speed factor or by ``factor`` (one workload's)."""
        if not self._moves(scaling):
            return entry
        scale = (factor or self.factor.factor) ** (-_EXPONENT[scaling])
        return replace(entry, mean=entry.mean * scale, stderr=None if entry.stderr is None else entry.stderr * scale)

    @property
    def factor_range(self) -> tuple:
        """(lowest, highest) of the workloads' factors (the machine speed factor lies between)."""
        values = [v for v in self.factor.ratios.values() if v > 0 and math.isfinite(v)] + [self.factor.factor]
        return min(values), max(values)

    @property
    def workloads_disagree(self) -> bool:
        """Whether the workloads' factors differ (beyond rounding), so that the verdict reads a row
        under each of them rather than under the speed factor alone."""
        low, high = self.factor_range
        return high / low > 1.0005

    def judge(self, reference, current, scaling: Optional[Scaling], higher_is_better: bool, tol: Tolerance,
              alpha: float) -> Decision:
        """The decision on one speed row (see the module doc): a rate or duration compared across
        machines is worse only under every workload's factor, better only under every one; its figures
        (change, ratio) are those under the machine speed factor."""
        tol = self.tolerance(tol, scaling)
        decision = decide(reference.stats, self.normalise(current, scaling).stats, higher_is_better, tol, alpha)
        if not self._moves(scaling):
            return decision
        # The lowest factor reads the row at its best (durations times less, rates divided by less).
        low, high = self.factor_range
        kindest = decide(reference.stats, self.normalise(current, scaling, low).stats, higher_is_better, tol, alpha)
        harshest = decide(reference.stats, self.normalise(current, scaling, high).stats, higher_is_better, tol, alpha)
        verdict = (Verdict.WORSE if kindest.verdict == Verdict.WORSE
                   else Verdict.BETTER if harshest.verdict == Verdict.BETTER else Verdict.UNCHANGED)
        return replace(decision, verdict=verdict, p_worse=kindest.p_worse, p_better=harshest.p_better)

    def tolerance(self, tol: Tolerance, scaling: Optional[Scaling]) -> Tolerance:
        """The floor of a row: as declared, widened by ``spread`` for a rate or duration across machines."""
        if not self._moves(scaling):
            return tol
        if tol.ratio:
            return Tolerance(relative=1.0 - 1.0 / (tol.factor * self.spread), ratio=True)
        return Tolerance(relative=tol.relative * self.spread, absolute=tol.absolute * self.spread)

    def row_note(self, scaling: Optional[Scaling]) -> str:
        if self.mode != SpeedMode.NORMALISED:
            return ""
        if scaling is None:
            return UNDECLARED_SCALING
        if not self._moves(scaling):
            return "does not depend on the machine's speed: compared as measured"
        if self.workloads_disagree:
            low, high = self.factor_range
            return (f"normalised by the machine speed factor x{self.factor.factor:.3g}; judged by each "
                    f"workload's, x{low:.3g} to x{high:.3g}")
        return f"normalised by the machine speed factor x{self.factor.factor:.3g}"


# Why a row is not compared, in a clause.
WHY_CLAUSE = {
    WhyNotCompared.QUALITY_ONLY: "speed is not judged",
    WhyNotCompared.NO_REFERENCE_FIGURES: "no figures of a known machine to set it against",
    WhyNotCompared.CURRENT_RECORDS_NO_MACHINE: "the machine of a seed is not known",
    WhyNotCompared.NO_CALIBRATION: "no usable calibration",
    WhyNotCompared.REFERENCE_RECORDS_NO_MACHINE: "the reference records no machine with a calibration",
    WhyNotCompared.NO_COMPARABLE_MACHINE: "no reference machine of its device with a comparable calibration",
}


def clause(plan: SpeedPlan) -> str:
    """What one plan does with its rows, in a clause: ``compared as measured ...``."""
    if plan.mode == SpeedMode.SAME_MACHINE:
        return "compared as measured with figures of the same machine"
    if plan.mode == SpeedMode.NORMALISED:
        every = " under every workload's factor" if plan.workloads_disagree else ""
        return (f"normalised to `{plan.reference_id}` by its calibration, x{plan.factor.factor:.3g} as fast, "
                f"and worse only beyond the floor times {plan.spread:g}{every}")
    return f"not compared ({WHY_CLAUSE.get(plan.why, plan.why)})"


@dataclass
class MachinePlans:
    """The plans of a comparison whose rows were measured on several machines: each row is judged under
    the plan of the machine (or the pair of machines) that measured it (:meth:`for_row`). It answers what
    a :class:`SpeedPlan` answers about the whole comparison: ``mode`` PER_MACHINE, ``current`` the current
    results' machines, no single reference machine or factor."""

    plans: dict  # plan key -> SpeedPlan
    rows: dict  # row key -> plan key
    main: SpeedPlan  # for a row the current results do not hold: the plan of most rows
    current: MachineSide
    spread: float
    references: list
    jobs: dict = field(default_factory=dict)  # plan key -> jobs measured there (where one machine is)
    mode: SpeedMode = SpeedMode.PER_MACHINE
    why: Optional[WhyNotCompared] = None
    reference_id: Optional[str] = None
    reference: Optional[MachineSide] = None
    factor: Optional[SpeedFactor] = None
    candidates: int = 0
    current_machine_in_reference: Optional[bool] = None
    workloads_disagree: bool = False

    def for_row(self, key: tuple) -> SpeedPlan:
        return self.plans.get(self.rows.get(key), self.main)

    @property
    def compared(self) -> bool:
        return any(plan.compared for plan in self.plans.values())

    @property
    def reference_ids(self) -> list:
        return sorted({rid for plan in [*self.plans.values(), self.main] for rid in plan.reference_ids})

    def describe(self) -> str:
        """The summary's sentence: each machine, how many jobs it ran and how its rows were compared."""
        parts = []
        for key, plan in sorted(self.plans.items(), key=lambda kv: str(kv[0])):
            jobs = self.jobs.get(key)
            what = (f"{jobs} job{'s' if jobs != 1 else ''} on {plan.current.describe()}" if jobs
                    else f"rows whose seeds ran on {plan.current.describe()}")
            parts.append(f"{what}: {clause(plan)}")
        return (f"Speed: the rows were measured on {len(self.current.ids)} machines, and each is judged by the "
                f"machine that measured it: " + "; ".join(parts) + ".")

    def as_dicts(self) -> list:
        """One dict per plan, for ``--format json``."""
        return [{"machine": plan.current.id, "machines": plan.current.ids, "jobs": self.jobs.get(key),
                 "mode": plan.mode, "reference_machine": plan.reference_id, "why": plan.why,
                 "factor": plan.factor.factor if plan.compared and plan.factor else None,
                 "factor_by_workload": plan.factor.ratios if plan.compared and plan.factor else None}
                for key, plan in sorted(self.plans.items(), key=lambda kv: str(kv[0]))]


def plan_speed(references: Mapping[str, MachineSide], current: MachineSide, quality_only: bool = False,
               spread: float = MACHINE_SPREAD) -> SpeedPlan:
    """Choose how speed rows are compared (see the module doc). ``references``: the reference's machines
    by id (a machine whose fingerprint is unknown has ``id`` None); ``quality_only``: compare none."""
    if not spread >= 1:
        raise UserError(f"the machine spread must be at least 1, not {spread}")
    plan = SpeedPlan(SpeedMode.NOT_COMPARED, current, spread=spread, references=sorted(references))
    if quality_only:
        return replace(plan, why=WhyNotCompared.QUALITY_ONLY)
    if not references:
        return replace(plan, why=WhyNotCompared.NO_REFERENCE_FIGURES)
    if current.id is not None and current.id in references:
        reference = references[current.id]
        return replace(plan, mode=SpeedMode.SAME_MACHINE, reference_id=current.id, reference=reference,
                       factor=speed_factor(reference.calibration, current.calibration))
    if not current.ids:
        return replace(plan, why=WhyNotCompared.CURRENT_RECORDS_NO_MACHINE)
    if current.calibration is None:
        return replace(plan, why=WhyNotCompared.NO_CALIBRATION)
    candidates = []
    for rid, reference in sorted(references.items()):
        factor = speed_factor(reference.calibration, current.calibration)
        if reference.id is not None and factor is not None and reference.device == current.device:
            candidates.append((abs(math.log(factor.factor)), rid, reference, factor))
    if not candidates:
        known = any(reference.fingerprint for reference in references.values())
        return replace(plan, why=WhyNotCompared.NO_COMPARABLE_MACHINE if known
                       else WhyNotCompared.REFERENCE_RECORDS_NO_MACHINE)
    _, rid, reference, factor = min(candidates, key=lambda c: (c[0], c[1]))
    return replace(plan, mode=SpeedMode.NORMALISED, reference_id=rid, reference=reference, factor=factor,
                   candidates=len(candidates))
