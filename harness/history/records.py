"""Reading a results directory into history records: the one place the history meets the results store.

:func:`records_from_results` summarises a results directory as the regression gate does (the newest job
per model, dataset, seed and profile; means over seeds with their standard errors) and adds what the
history needs to key each number: the machine that measured it (its cluster node, else its run), the
environment the run recorded and each measurement's **protocol**, the settings that change what the
number means. Two points of a curve are joined only where their protocols are equal (:mod:`harness.history.series`).
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Mapping, Optional

from harness.contracts import UserError, split_variant
from harness.jobs import JobStatus

ENVIRONMENT_KEYS = ("harness", "torch", "python", "platform", "plugins")


@dataclass
class Record:
    """One (model, dataset, metric identity) of one results directory, as a history line stores it.

    ``protocol``: what must be equal for two values to be one curve: ``profile``, ``identity`` (the
    measurement's identity, with its sample count where that is part of it), ``variant`` (the sampling
    variant, or null), ``dataset_version`` (the dataset's provenance hash), and ``sample_count`` (the
    examples or samples behind a quality figure) or, for speed figures, ``device`` and ``torch_threads``;
    then every setting the measurement's own protocol recorded (the evaluation split and subset, importance
    samples, an extractor's fingerprint ...). Readers treat every key alike, so a writer may add keys
    (more settings) without a new format version."""

    dataset: str
    model: str
    metric: str
    id: str
    mean: float
    stderr: Optional[float]
    n_seeds: int
    seeds: list
    unit: str
    higher_is_better: Optional[bool]
    role: Optional[str]
    scaling: Optional[str]
    estimator: str
    tolerance: Optional[dict]
    machine: Optional[str]
    protocol: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class ResultsSummary:
    """What :func:`records_from_results` reads: the records and the context a history line keeps."""

    source: str
    records: list  # Record
    date: str  # when the newest run finished (ISO 8601, UTC)
    runs: list  # run ids
    machines: dict  # id -> {"description", "fingerprint", "calibration"}
    environment: dict


def _iso(timestamp: Optional[float]) -> Optional[str]:
    if timestamp is None or not math.isfinite(timestamp):
        return None
    return dt.datetime.fromtimestamp(timestamp, dt.timezone.utc).isoformat(timespec="seconds")


def _machines(results) -> tuple:
    """(job key -> machine id, machine id -> {"description", "fingerprint", "calibration"}): the machine
    that measured each job (its cluster node's where it ran on one, else its run's;
    :func:`harness.comparison.measured_on`), its calibration pooled over nodes and runs."""
    from harness.comparison.measured import measured_on
    from harness.machine import describe

    of_job, sides = measured_on(results)
    return of_job, {mid: {"description": describe(side.fingerprint), "fingerprint": side.fingerprint,
                          "calibration": side.calibration} for mid, side in sides.items()}


def _sample_count(values) -> Optional[object]:
    counts = sorted({int(v) for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))})
    return None if not counts else counts[0] if len(counts) == 1 else counts


def _protocol(entry, profile: str, dataset_version: Optional[str], rows, speed: bool, info: Mapping,
              fingerprint: Mapping) -> dict:
    """What a record's curve must share (see :class:`Record`): the profile, identity, variant and dataset
    version; the sample count of a quality figure, or the device and torch threads of a speed figure; and
    every setting of the protocol the measurements recorded (``entry.protocol``; nothing where the results
    predate stored protocols, so a curve splits once where they begin)."""
    protocol = {"profile": profile, "identity": entry.id, "variant": split_variant(entry.id)[1],
                "dataset_version": dataset_version}
    if not speed:  # a speed figure's count is how many timings it took, which varies from run to run
        protocol["sample_count"] = _sample_count(rows["n"])
    else:
        protocol["device"] = info.get("device")
        protocol["torch_threads"] = fingerprint.get("torch_threads", info.get("threads"))
    for key, value in (entry.protocol or {}).items():
        protocol.setdefault(key, value)
    return protocol


def records_from_results(directory, outputs: Optional[Mapping] = None) -> ResultsSummary:
    """Summarise the results directory ``directory`` into history records (see the module docstring).

    ``outputs`` (measurement name -> Output; the CLI passes the installed metrics') declare what the
    store does not. One directory must hold one profile (:class:`UserError` otherwise)."""
    from harness.comparison import is_speed, load_results, summarise
    from harness.store import Store, find_store

    directory = Path(directory)
    if not directory.is_dir():
        raise UserError(f"{directory} is not a results directory (history reads a directory written by "
                        "`python -m harness run --out DIR`, not a CSV)")
    find_store(directory)
    results = load_results(directory, outputs=outputs)
    profile = results.profile()
    store = Store(directory, read_only=True)
    try:
        runs = store.runs()
    finally:
        store.close()
    ok = results.rows[results.rows["status"] == JobStatus.OK]
    used = set(ok["run_id"])
    runs = [r for r in runs if r["run_id"] in used]
    if not runs:
        raise UserError(f"no ok measurements in {directory}: nothing to add to a history")
    machine_of_job, machines = _machines(results)
    info_of_run = {r["run_id"]: r["info"] for r in runs}
    records = []
    for entry in summarise(results):
        rows = ok[(ok["model"] == entry.model) & (ok["dataset"] == entry.dataset) & (ok["id"] == entry.id)]
        newest = rows.sort_values("finished").iloc[-1]
        info = info_of_run.get(newest["run_id"], {})
        out = results.outputs.get(entry.metric)
        speed = is_speed(out)
        fingerprint = machines.get(machine_of_job.get(newest["key"]), {}).get("fingerprint", {})
        protocol = _protocol(entry, profile, results.datasets.get(entry.dataset), rows, speed, info, fingerprint)
        records.append(Record(
            dataset=entry.dataset, model=entry.model, metric=entry.metric, id=entry.id, mean=float(entry.mean),
            stderr=entry.stderr, n_seeds=entry.n_seeds, seeds=list(entry.seeds), unit=entry.unit,
            higher_is_better=entry.higher_is_better,
            role=None if out is None else str(out.role.value),
            scaling=None if out is None or out.scaling is None else str(out.scaling.value),
            estimator=entry.estimator, tolerance=None if out is None else out.tolerance.as_dict(),
            machine=machine_of_job.get(newest["key"]), protocol=protocol))
    newest_run = max(runs, key=lambda r: r["finished"] or r["started"] or 0)
    environment = {k: newest_run["info"][k] for k in ENVIRONMENT_KEYS if k in newest_run["info"]}
    return ResultsSummary(source=str(directory.resolve()), records=records,
                          date=_iso(newest_run["finished"] or newest_run["started"]) or "",
                          runs=sorted(r["run_id"] for r in runs), machines=machines, environment=environment)
