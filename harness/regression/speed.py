"""The gate's side of the machine rule: a baseline's speed sections as the reference machines of
:func:`harness.comparison.plan_speed`, and what the gate's summary says about the plan it chose.

A baseline keeps its speed rows in one section per machine (fingerprint id, fingerprint, calibration;
see :mod:`harness.machine`). ``compare`` compares the results' speed rows with the section of the same
machine as measured, with the nearest calibrated section of the same device type normalised by the
two calibrations, or not at all (``--quality-only``, or no section can be set against the results);
results whose rows were measured on several machines (a cluster's nodes) get that choice row by row,
by the machine that measured each. :mod:`harness.comparison.machines` states the rule.
"""

from __future__ import annotations

from typing import Optional

from harness.comparison import MACHINE_SPREAD, MachineSide, SpeedMode, SpeedPlan, WhyNotCompared, plan_results
from harness.machine import describe as describe_fingerprint

MERGE_HINT = "`python -m harness baseline save RESULTS --to FILE --merge`"


def section_machine(section_id: str, section: dict) -> MachineSide:
    """The machine of a baseline's speed section (id None when the section records no fingerprint)."""
    fp = dict(section.get("fingerprint") or {})
    known = bool(fp)
    return MachineSide(section_id if known else None, fp, section.get("calibration"), [section_id] if known else [])


def plan_for(doc: dict, results, quality_only: bool = False, spread: float = MACHINE_SPREAD):
    """The machine rule's plan for the results' speed rows against the baseline ``doc``'s sections: one
    SpeedPlan, or a MachinePlans when the results' rows were measured on several machines."""
    sections = doc.get("machines") or {}
    return plan_results({sid: section_machine(sid, s) for sid, s in sections.items()}, results, quality_only, spread)


def _reason(plan: SpeedPlan, doc: dict) -> str:
    """Why the plan compares no speed row, or a note about its choice."""
    sections = doc.get("machines") or {}
    current = plan.current.describe()
    if plan.why == WhyNotCompared.QUALITY_ONLY:
        return "--quality-only: speed rows are listed (with --all-rows) but not judged."
    if plan.why == WhyNotCompared.NO_REFERENCE_FIGURES:
        return "The baseline holds no speed figures."
    if plan.why == WhyNotCompared.CURRENT_RECORDS_NO_MACHINE:
        return ("The results record no machine (a CSV, or a store written before runs recorded their machine), "
                "so their speed figures cannot be set against any machine's.")
    if plan.why == WhyNotCompared.NO_CALIBRATION:
        return f"The results come from {current} and carry no usable calibration."
    if plan.why == WhyNotCompared.REFERENCE_RECORDS_NO_MACHINE:
        what = "; ".join(sorted({str(s.get("description") or "unknown machine") for s in sections.values()}))
        return (f"The baseline records no machine for its speed figures ({what}) and none has a calibration, so "
                f"they cannot be set against the results' ({current}). Refresh the baseline, or add this "
                f"machine's section with {MERGE_HINT}.")
    if plan.why == WhyNotCompared.NO_COMPARABLE_MACHINE:
        described = "; ".join(f"`{sid}` ({describe_fingerprint(s.get('fingerprint') or {})})"
                              for sid, s in sorted(sections.items()))
        return (f"The baseline's speed figures come from other machines ({described}) and none has a calibration "
                f"comparable with the results' ({current}, device {plan.current.device}). Add this machine's "
                f"section with {MERGE_HINT}.")
    if plan.candidates > 1:
        return f"Of {plan.candidates} machine sections, the nearest in speed was chosen."
    return ""


def describe(plan: SpeedPlan, doc: dict) -> str:
    """The summary's sentence on speed rows."""
    if plan.mode == SpeedMode.PER_MACHINE:
        return plan.describe()
    reason = _reason(plan, doc)
    if plan.mode == SpeedMode.SAME_MACHINE:
        text = (f"Speed: the baseline's speed figures come from this machine (the one that made the results), "
                f"{plan.current.describe()}: compared as measured, with the declared floors.")
        if plan.factor is not None and not 1 / 1.5 <= plan.factor.factor <= 1.5:
            text += (f" The two runs' calibrations differ by {plan.factor.describe()}: the machine was busier, "
                     "throttled or less busy in one of them.")
        return text
    if plan.mode == SpeedMode.NORMALISED:
        return (f"Speed: the baseline's speed figures come from another machine, {plan.reference.describe()}, "
                f"not from this one (the one that made the results), {plan.current.describe()}. The calibrations "
                f"say the results' machine is {plan.factor.describe()} as fast; rates are divided and durations "
                f"multiplied by that factor, and such a row is worse only beyond its floor times {plan.spread:g}"
                + (" under every workload's factor" if plan.workloads_disagree else "")
                + ". Bytes and FLOP counts are compared as measured; a figure whose metric does not declare how it "
                  "scales with machine speed is not compared." + (f" {reason}" if reason else ""))
    text = f"Speed: not compared. {reason}"
    names_baseline = plan.why in (WhyNotCompared.REFERENCE_RECORDS_NO_MACHINE, WhyNotCompared.NO_COMPARABLE_MACHINE)
    if plan.references and plan.current_machine_in_reference is not None:
        if plan.current_machine_in_reference:
            text += f" The baseline has speed figures from this machine, {plan.current.describe()}."
        elif not names_baseline:
            text += (f" The baseline's speed figures come from other machines ({', '.join(plan.references)}), "
                     f"not from this one, {plan.current.describe()}.")
    return text


def speed_dict(plan, doc: dict) -> Optional[dict]:
    """The plan for ``compare --format json``."""
    if plan is None:
        return None
    return {"mode": plan.mode, "summary": describe(plan, doc), "results_machine": plan.current.id,
            "results_machines": plan.current.ids, "baseline_machine": plan.reference_id,
            "baseline_machines": plan.references, "same_machine": plan.mode == SpeedMode.SAME_MACHINE,
            "baseline_from_this_machine": plan.current_machine_in_reference,
            "factor": plan.factor.factor if plan.factor else None,
            "factor_by_workload": plan.factor.ratios if plan.factor else None, "spread": plan.spread,
            **({"machines": plan.as_dicts()} if plan.mode == SpeedMode.PER_MACHINE else {})}
