"""The machine rule: how the regression gate compares speed rows.

Speed figures are only comparable as they stand on the same machine. A baseline keeps its speed
rows in one section per machine (fingerprint id, fingerprint, calibration; see
:mod:`harness.machine`), and ``compare`` chooses one of three ways, which it states in its summary:

- **same machine**: the baseline has a section with the results' machine id: the rows are compared
  as measured, with the floors their metrics declare;
- **normalised**: otherwise, against the section of the nearest machine of the same device type that
  has a calibration, when the results have one too: the machine speed factor ``s`` (how many times
  faster the results' machine ran the calibration workloads, :func:`harness.machine.speed_factor`)
  divides rates (units ``.../s``) and multiplies durations (``s``, ``ms``, ...), and such a row is
  worse only beyond its declared floor times ``spread`` (:data:`MACHINE_SPREAD`, measured in
  docs/regression.md). ``s`` is the geometric mean of the workloads' own factors, and which of them a
  model's work resembles is not known: where they disagree (AVX2 against AVX512 kernels: the matrix
  product 0.68 times as fast, the small operations 0.42 times), a row is judged *worse* only if it is
  worse under every workload's factor (the one most in its favour) and *better* only if better under
  every one; its normalised figure is still the one under ``s``. Rows that do not depend on the
  machine's speed (bytes, FLOP counts, fractions) are compared as measured;
- **not compared**: ``--quality-only``, or no section can be compared (no calibration on one side, no
  section for this device type, results from several machines without calibrations): the speed rows
  are listed as ``not-compared`` and never fail the gate on raw numbers.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, replace
from typing import Optional

from harness.contracts import SPEED, Tolerance
from harness.machine import SpeedFactor, describe, pooled, speed_factor
from harness.regression.rule import Decision, decide

# The floor of a time-dependent speed row compared across machines is its declared floor times this:
# the spread of calibration-normalised ratios of the built-in models between two machine settings
# (docs/regression.md, "How wide across machines").
MACHINE_SPREAD = 1.2

SAME_MACHINE, NORMALISED, SKIPPED = "same-machine", "normalised", "not-compared"

_TIME_UNITS = {"s", "sec", "second", "seconds", "ms", "us", "µs", "ns", "min", "minute", "minutes", "h"}


def time_dependence(unit: str) -> int:
    """+1 for a rate (``samples/s``, ``FLOP/s``), -1 for a duration (``ms``, ``s/step``), 0 for a
    quantity that does not depend on how fast the machine is (``bytes``, ``FLOP/sample``)."""
    parts = [p.strip().lower() for p in re.split(r"/", unit or "")]
    if len(parts) >= 2 and parts[-1] in _TIME_UNITS:
        return 1
    if parts and parts[0] in _TIME_UNITS:
        return -1
    return 0


def is_speed(entry) -> bool:
    """A speed row: declared kind ``speed``; where the kind is unknown, a ``measured`` one."""
    return entry.kind == SPEED or (not entry.kind and entry.estimator == "measured")


@dataclass
class MachineSide:
    """The machine of a results set (or of a baseline section): its id (None when unknown or when
    several machines made the results), fingerprint and calibration (pooled over runs)."""

    id: Optional[str]
    fingerprint: dict = field(default_factory=dict)
    calibration: Optional[dict] = None
    ids: list = field(default_factory=list)  # every machine id seen

    @property
    def device(self) -> Optional[str]:
        return self.fingerprint.get("device")

    def describe(self) -> str:
        if len(self.ids) > 1:
            return f"{len(self.ids)} machines ({', '.join(self.ids)})"
        if self.id is None:
            return "an unknown machine"
        return f"`{self.id}` ({describe(self.fingerprint)})"


def results_machine(results) -> MachineSide:
    """The machine (or machines) of a results set, from the machine info its runs recorded."""
    infos = [info for info in results.machines.values() if isinstance(info, dict) and info.get("id")]
    ids = sorted({info["id"] for info in infos})
    if not ids:
        return MachineSide(None)
    calibration = pooled([info.get("calibration") for info in infos])
    if len(ids) > 1:
        return MachineSide(None, {}, calibration, ids)
    return MachineSide(ids[0], dict(infos[0].get("fingerprint") or {}), calibration, ids)


def section_machine(section_id: str, section: dict) -> MachineSide:
    fp = dict(section.get("fingerprint") or {})
    known = bool(fp)
    return MachineSide(section_id if known else None, fp, section.get("calibration"), [section_id] if known else [])


@dataclass
class SpeedPlan:
    """How this comparison treats speed rows (see the module doc)."""

    mode: str
    results: MachineSide
    reason: str = ""  # why the rows are not compared, or a note about the choice
    section_id: Optional[str] = None
    section: Optional[dict] = None
    baseline: Optional[MachineSide] = None
    factor: Optional[SpeedFactor] = None  # results' machine speed / baseline machine's
    spread: float = MACHINE_SPREAD
    sections: list = field(default_factory=list)  # ids of every speed section in the baseline
    reason_names_baseline: bool = False  # the reason already says where the baseline's figures come from

    @property
    def baseline_from_this_machine(self) -> Optional[bool]:
        """Whether the baseline holds speed figures of the results' machine (None: the results record
        no single machine)."""
        return None if self.results.id is None else self.results.id in self.sections

    @property
    def compared(self) -> bool:
        return self.mode in (SAME_MACHINE, NORMALISED)

    def normalise(self, entry, factor: Optional[float] = None, unit: Optional[str] = None):
        """The results' entry as it would read on the baseline's machine (NORMALISED only), by the
        machine speed factor or by ``factor`` (one workload's); ``unit``: the row's, if not the entry's."""
        d = time_dependence(entry.unit if unit is None else unit)
        if self.mode != NORMALISED or d == 0:
            return entry
        scale = (factor or self.factor.factor) ** (-d)
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

    def judge(self, base, entry, unit: str, higher_is_better: bool, tol: Tolerance, alpha: float) -> Decision:
        """The verdict on one row of this plan's speed section (see the module doc): a time-dependent
        row compared across machines is worse only under every workload's factor, better only under
        every one; its figures (change, ratio) are those under the machine speed factor."""
        tol = self.tolerance(tol, unit)
        decision = decide(base, self.normalise(entry, unit=unit).stats, higher_is_better, tol, alpha)
        if self.mode != NORMALISED or time_dependence(unit) == 0:
            return decision
        # The lowest factor reads the row at its best (durations times less, rates divided by less).
        low, high = self.factor_range
        kindest = decide(base, self.normalise(entry, low, unit).stats, higher_is_better, tol, alpha)
        harshest = decide(base, self.normalise(entry, high, unit).stats, higher_is_better, tol, alpha)
        verdict = ("worse" if kindest.verdict == "worse" else "better" if harshest.verdict == "better"
                   else "unchanged")
        return replace(decision, verdict=verdict, p_worse=kindest.p_worse, p_better=harshest.p_better)

    def tolerance(self, tol: Tolerance, unit: str) -> Tolerance:
        """The floor of a row: as declared, widened by ``spread`` for a time-dependent row across machines."""
        if self.mode != NORMALISED or time_dependence(unit) == 0:
            return tol
        if tol.ratio:
            return Tolerance(relative=1.0 - 1.0 / (tol.factor * self.spread), ratio=True)
        return Tolerance(relative=tol.relative * self.spread, absolute=tol.absolute * self.spread)

    def row_note(self, unit: str) -> str:
        if self.mode != NORMALISED:
            return ""
        if time_dependence(unit) == 0:
            return "does not depend on the machine's speed: compared as measured"
        if self.workloads_disagree:
            low, high = self.factor_range
            return (f"normalised by the machine speed factor x{self.factor.factor:.3g}; judged by each "
                    f"workload's, x{low:.3g} to x{high:.3g}")
        return f"normalised by the machine speed factor x{self.factor.factor:.3g}"

    def describe(self) -> str:
        """The summary's sentence on speed rows."""
        if self.mode == SAME_MACHINE:
            text = (f"Speed: the baseline's speed figures come from this machine (the one that made the results), "
                    f"{self.results.describe()}: compared as measured, with the declared floors.")
            if self.factor is not None and not 1 / 1.5 <= self.factor.factor <= 1.5:
                text += (f" The two runs' calibrations differ by {self.factor.describe()}: the machine was busier, "
                         "throttled or less busy in one of them.")
            return text
        if self.mode == NORMALISED:
            return (f"Speed: the baseline's speed figures come from another machine, {self.baseline.describe()}, "
                    f"not from this one (the one that made the results), {self.results.describe()}. The calibrations say the results' machine is "
                    f"{self.factor.describe()} as fast; rates are divided and durations multiplied by that factor, "
                    f"and such a row is worse only beyond its floor times {self.spread:g}"
                    + (" under every workload's factor" if self.workloads_disagree else "")
                    + ". Bytes and FLOP counts are compared as measured." + (f" {self.reason}" if self.reason else ""))
        text = f"Speed: not compared. {self.reason}"
        if self.mode == SKIPPED and self.sections and self.baseline_from_this_machine is not None:
            if self.baseline_from_this_machine:
                text += f" The baseline has speed figures from this machine, {self.results.describe()}."
            elif not self.reason_names_baseline:
                text += (f" The baseline's speed figures come from other machines ({', '.join(self.sections)}), "
                         f"not from this one, {self.results.describe()}.")
        return text


def plan_speed(doc: dict, results, quality_only: bool = False, spread: float = MACHINE_SPREAD) -> SpeedPlan:
    """Choose how speed rows are compared (see the module doc)."""
    if not spread >= 1:
        from harness.contracts import UserError

        raise UserError(f"the machine spread must be at least 1, not {spread}")
    mine = results_machine(results)
    sections = doc.get("machines") or {}
    plan = SpeedPlan(SKIPPED, mine, spread=spread, sections=sorted(sections))
    if quality_only:
        plan.reason = "--quality-only: speed rows are listed (with --all-rows) but not judged."
        return plan
    if not sections:
        plan.reason = "The baseline holds no speed figures."
        return plan
    if mine.id is not None and mine.id in sections:
        base = section_machine(mine.id, sections[mine.id])
        return replace(plan, mode=SAME_MACHINE, section_id=mine.id, section=sections[mine.id], baseline=base,
                       factor=speed_factor(base.calibration, mine.calibration))
    if not mine.ids:
        plan.reason = ("The results record no machine (a CSV, or a store written before runs recorded their "
                       "machine), so their speed figures cannot be set against any machine's.")
        return plan
    if mine.calibration is None:
        plan.reason = f"The results come from {mine.describe()} and carry no usable calibration."
        return plan
    device = mine.device or (mine.calibration or {}).get("device", "").split(":")[0] or None
    candidates = []
    for sid, section in sorted(sections.items()):
        base = section_machine(sid, section)
        base_device = base.device or ((base.calibration or {}).get("device") or "").split(":")[0] or None
        factor = speed_factor(base.calibration, mine.calibration)
        if base.id is not None and factor is not None and base_device == device:
            candidates.append((abs(math.log(factor.factor)), sid, section, base, factor))
    if not candidates and not any(section.get("fingerprint") for section in sections.values()):
        what = "; ".join(sorted({str(section.get("description") or "unknown machine") for section in sections.values()}))
        plan.reason = (f"The baseline records no machine for its speed figures ({what}) and none has a "
                       f"calibration, so they cannot be set against the results' ({mine.describe()}). Refresh the "
                       "baseline, or add this machine's section with "
                       "`python -m harness baseline save RESULTS --to FILE --merge`.")
        plan.reason_names_baseline = True
        return plan
    if not candidates:
        described = "; ".join(f"`{sid}` ({describe(s.get('fingerprint') or {})})" for sid, s in sorted(sections.items()))
        plan.reason = (f"The baseline's speed figures come from other machines ({described}) and none has a "
                       f"calibration comparable with the results' ({mine.describe()}, device {device}). Add this "
                       "machine's section with `python -m harness baseline save RESULTS --to FILE --merge`.")
        plan.reason_names_baseline = True
        return plan
    _, sid, section, base, factor = min(candidates, key=lambda c: (c[0], c[1]))
    reason = ""
    if len(candidates) > 1:
        reason = f"Of {len(candidates)} machine sections, the nearest in speed was chosen."
    return replace(plan, mode=NORMALISED, section_id=sid, section=section, baseline=base, factor=factor,
                   reason=reason)
