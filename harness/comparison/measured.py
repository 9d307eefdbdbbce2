"""Which machine measured what: the machine of each job and of each row of a results set, and the
machine rule's plans built from them (one plan, or one per machine, :class:`~harness.comparison.machines.MachinePlans`).

A job that ran on a cluster node carries its node's record in its details (``machine``: the machine id;
``node``: the node's fingerprint and calibration, made there, docs/cluster.md); any other job ran on the
machine its run records. A machine's calibration is the median over its nodes and runs.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Mapping

from harness.comparison.machines import MACHINE_SPREAD, MachinePlans, MachineSide, plan_speed
from harness.jobs import JobStatus
from harness.machine import machine_id, pooled


def _details(raw) -> dict:
    if isinstance(raw, dict):
        return raw
    try:
        return json.loads(raw) if isinstance(raw, str) and raw else {}
    except ValueError:
        return {}


def measured_on(results) -> tuple:
    """(job key -> machine id, machine id -> MachineSide) for the jobs of a result set that ran: a job's
    node record where it has one, else its run's machine; a job whose node is not known (its task's node
    was lost) has none."""
    runs = {rid: info for rid, info in results.machines.items() if isinstance(info, dict) and info.get("id")}
    rows = results.rows
    if rows.empty or (not runs and "job_details" not in rows):
        return {}, {}
    rows = rows[rows["status"] != JobStatus.SKIPPED] if "status" in rows else rows
    columns = [c for c in ("key", "run_id", "job_details") if c in rows]
    of_job, fingerprints, calibrations = {}, {}, {}
    for rec in rows[columns].drop_duplicates([c for c in ("key", "run_id") if c in rows]).to_dict("records"):
        details, run = _details(rec.get("job_details")), runs.get(rec.get("run_id"))
        node = details.get("node") or {}
        if node.get("fingerprint"):
            mid = details.get("machine") or machine_id(node["fingerprint"])
            fp, calibration, where = node["fingerprint"], node.get("calibration"), (rec.get("run_id"), node.get("id"))
        elif run is not None and details.get("machine", run["id"]) is not None:
            mid, fp, calibration, where = run["id"], run.get("fingerprint"), run.get("calibration"), rec.get("run_id")
        else:
            continue
        of_job[rec.get("key")] = mid
        fingerprints.setdefault(mid, dict(fp or {}))
        calibrations.setdefault(mid, {})[where] = calibration
    return of_job, {mid: MachineSide(mid, fp, pooled(list(calibrations[mid].values())), [mid])
                    for mid, fp in fingerprints.items()}


def results_machine(results) -> MachineSide:
    """The machine of a result set's jobs; id None when there are several (their ids in ``ids``, their
    calibrations pooled) or none is known."""
    _, sides = measured_on(results)
    if len(sides) == 1:
        return next(iter(sides.values()))
    if not sides:
        return MachineSide(None)
    return MachineSide(None, {}, pooled([side.calibration for side in sides.values()]), sorted(sides))


def row_machines(results) -> dict:
    """(model, dataset, metric identity) -> the machine that measured the row's ok figures (the seeds the
    summary averages): one machine's side; a side of its own for seeds on several machines (ids joined by
    ``+``, the median of one calibration per seed); an unknown one when a seed's machine is not known."""
    of_job, sides = measured_on(results)
    df = results.rows
    if "key" not in df or df.empty:
        return {}
    ok = df[(df["status"] == JobStatus.OK) & df["metric"].notna()]
    ok = ok.assign(label=ok["id"].fillna(ok["metric"]) if "id" in ok else ok["metric"])
    if "finished" in ok:  # the figures the summary keeps: the newest per seed
        ok = ok.sort_values("finished", kind="stable").drop_duplicates(["dataset", "model", "label", "seed"],
                                                                       keep="last")
    out = {}
    for (model, dataset, label), keys in ok.groupby(["model", "dataset", "label"])["key"]:
        ids = [of_job.get(k) for k in keys]
        known = sorted(set(ids) - {None})
        if None in ids or not known:
            side = MachineSide(None)
        elif len(known) == 1:
            side = sides[known[0]]
        else:
            side = MachineSide("+".join(known), {}, pooled([sides[i].calibration for i in ids]), known)
        out[(model, dataset, label)] = side
    return out


def plan_results(references: Mapping[str, MachineSide], results, quality_only: bool = False,
                 spread: float = MACHINE_SPREAD):
    """The plan for a result set's speed rows against reference machines (a baseline's sections): one
    :class:`~harness.comparison.machines.SpeedPlan` when its jobs ran on one machine (or none is known),
    else one per machine that measured rows (:class:`~harness.comparison.machines.MachinePlans`)."""
    whole = results_machine(results)
    if quality_only or len(whole.ids) <= 1:
        return plan_speed(references, whole, quality_only, spread)
    return _per_row({key: (None, side) for key, side in row_machines(results).items()},
                    lambda _: references, whole, spread, results)


def plan_pair(a, b):
    """The plan for the speed rows of run ``b`` against run ``a`` (``report A B``): A's machine stands for
    a baseline's; row by row when either run's jobs ran on several machines."""
    machine_a, machine_b = results_machine(a), results_machine(b)
    if len(machine_a.ids) <= 1 and len(machine_b.ids) <= 1:
        return plan_speed({machine_a.id: machine_a} if machine_a.id else {}, machine_b)
    rows_a = row_machines(a)
    pairs = {key: (rows_a.get(key, machine_a), side) for key, side in row_machines(b).items()}
    return _per_row(pairs, lambda ref: {ref.id: ref} if ref is not None and ref.id else {}, machine_b,
                    MACHINE_SPREAD, b)


def _per_row(pairs: dict, offered, whole: MachineSide, spread: float, results) -> MachinePlans:
    """MachinePlans from row key -> (reference side or None, current side); ``offered(reference side)``:
    the reference machines that row may be set against."""
    plans, rows, counts = {}, {}, Counter()
    for key, (reference, current) in pairs.items():
        plan_key = (reference.id if reference is not None else None, current.id)
        if plan_key not in plans:
            plans[plan_key] = plan_speed(offered(reference), current, spread=spread)
        rows[key] = plan_key
        counts[plan_key] += 1
    of_job, _ = measured_on(results)
    jobs = Counter(of_job.values())
    main = plans[counts.most_common(1)[0][0]] if counts else plan_speed({}, whole, spread=spread)
    references = sorted({rid for plan in plans.values() for rid in plan.references})
    return MachinePlans(plans, rows, main, whole, spread, references,
                        {k: jobs[k[1]] for k in plans if k[1] in jobs})
