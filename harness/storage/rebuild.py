"""A new store for a results directory, from what is intact: the rows of the old store that still
read, results.csv (or results.json) and the saved models. Nothing on disk is lost.

- A job the old store still reads is kept as it was: its row and its measurements. Where its
  measurements were lost, or disagree with an export written after the job finished (bytes changed
  inside a value), they are taken from the export.
- A job of the export that the old store no longer reads is added: its key, hyperparameters and
  provenance from the saved model of the same (model, dataset, seed, profile) when there is exactly
  one, else a new key ``rebuilt-...`` (``run --resume`` then runs that job again under its own key);
  status and reason from its rows. An export row of a job the store replaced later is left out.
- A saved model that no job holds becomes a failed job saying its measurements were lost:
  ``run --resume`` restores the model and measures it again, without training.
- Runs and the metrics' declarations come from the old store; a run it lost gets a row with its id
  (the environment it recorded is gone), a declaration it lost the installed metric's.

results.csv is read before results.json (it keeps every digit; the JSON keeps ten). The old store,
with its write-ahead log, is kept beside the new one as ``results.sqlite.damaged-<time>``.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import os
import sqlite3
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Optional

from harness import artifacts
from harness.jobs import JobStatus, Origin
from harness.storage import lock
from harness.storage.check import normal_value, same_value
from harness.storage.salvage import salvage
from harness.store import REBUILT_PREFIX, SCHEMA, STORE_NAME

JOB_COLUMNS = 14
MEASUREMENT_COLUMNS = 13  # the last, protocol, is missing from a store written before protocols were recorded
SOURCES = tuple(o.value for o in Origin)
LOST = ("its measurements were lost with the damaged store; `run --resume` measures it again (restoring its saved "
        "model where there is one)")


@dataclass
class Rebuilt:
    """What :func:`rebuild` made: the new store, where the old one went, and where each job came from."""

    path: Path
    kept: Optional[Path] = None
    counts: dict = field(default_factory=lambda: {"store": 0, "export": 0, "saved models": 0})
    export: Optional[str] = None
    lost_tables: list = field(default_factory=list)


def rebuild(directory, declarations: Optional[Mapping] = None) -> Rebuilt:
    """Rebuild ``directory``'s store (see the module doc); ``declarations``: measurement name -> (metric
    name, :class:`harness.contracts.Output`) of the installed metrics, for declarations the old store lost."""
    directory = Path(directory)
    lock.acquire(directory)
    try:
        old = directory / STORE_NAME
        rows = salvage(old)
        export, export_name, export_time = _read_export(directory)
        saved = artifacts.list_artifacts(artifacts.artifacts_dir(directory))
        done = Rebuilt(directory / STORE_NAME, export=export_name,
                       lost_tables=[t for t, lost in rows["lost"].items() if lost])
        jobs, measurements = _jobs(rows, export, export_time, saved, done)
        runs = _runs(rows["runs"], jobs)
        outputs = _outputs(rows["outputs"], measurements, declarations or {})
        temp = directory / f".{STORE_NAME}.rebuilding-{uuid.uuid4().hex[:8]}"
        db = sqlite3.connect(temp)
        try:
            db.executescript(SCHEMA)
            with db:
                db.executemany("INSERT INTO runs VALUES (?, ?, ?, ?, ?)", runs)
                db.executemany(f"INSERT INTO jobs VALUES ({', '.join('?' * JOB_COLUMNS)})", jobs)
                db.executemany(f"INSERT INTO measurements VALUES ({', '.join('?' * MEASUREMENT_COLUMNS)})",
                               measurements)
                db.executemany("INSERT INTO outputs VALUES (?, ?, ?)", outputs)
            db.close()
            if old.exists():
                done.kept = old.with_name(f"{STORE_NAME}.damaged-{time.strftime('%Y%m%d-%H%M%S')}")
                for suffix in ("-wal", "-shm", "-journal"):  # never leave a log beside a store it does not belong to
                    log = old.with_name(STORE_NAME + suffix)
                    if log.exists():
                        os.replace(log, done.kept.with_name(done.kept.name + suffix))
                os.replace(old, done.kept)
            os.replace(temp, old)
        finally:
            db.close()
            temp.unlink(missing_ok=True)
        return done
    finally:
        lock.release(directory)


# ----------------------------------------------------------------------------- sources


def _read_export(directory: Path) -> tuple:
    """(rows of results.csv, else results.json, as dicts; the file's name; its modification time)."""
    for name in ("results.csv", "results.json"):
        path = directory / name
        try:
            if name.endswith(".csv"):
                with open(path, newline="", encoding="utf-8") as f:
                    rows = list(csv.DictReader(f))
            else:
                rows = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError, csv.Error):
            continue
        if isinstance(rows, list) and all(isinstance(r, dict) and "model" in r for r in rows):
            return rows, name, path.stat().st_mtime
    return [], None, 0.0


def _slot(model, dataset, seed, profile) -> tuple:
    """(model, dataset, seed, profile): what a job is, whichever run made it."""
    return (normal_value("model", model), normal_value("dataset", dataset), normal_value("seed", seed),
            normal_value("profile", profile))


def _identity(run_id, model, dataset, seed, profile) -> tuple:
    """A job of one run: (run id, model, dataset, seed, profile)."""
    return (normal_value("run_id", run_id),) + _slot(model, dataset, seed, profile)


def _jobs(rows: dict, export: list, export_time: float, saved: list, done: Rebuilt) -> tuple:
    jobs, measured = {}, {}
    for row in rows["jobs"]:
        if len(row) == JOB_COLUMNS and isinstance(row[0], str):
            jobs[row[0]] = list(row)
    for row in rows["measurements"]:
        if len(row) in (MEASUREMENT_COLUMNS - 1, MEASUREMENT_COLUMNS) and row[0] in jobs:
            measured.setdefault(row[0], []).append((list(row) + [None])[:MEASUREMENT_COLUMNS])
    groups: dict = {}
    for row in export:
        groups.setdefault(_identity(row.get("run_id"), row.get("model"), row.get("dataset"), row.get("seed"),
                                    row.get("profile")), []).append(row)
    by_identity = {_identity(j[1], j[2], j[4], j[5], j[6]): key for key, j in jobs.items()}
    newest = {}
    for j in jobs.values():
        slot = _slot(j[2], j[4], j[5], j[6])
        newest[slot] = max(newest.get(slot, 0.0), _float(j[10]))
    done.counts["store"] = len(jobs)
    for identity, group in sorted(groups.items(), key=lambda item: str(item[0])):
        key = by_identity.get(identity)
        if key is not None:
            if export_time >= _float(jobs[key][10]) and not _agree(measured.get(key, []), group):
                measured[key] = _measurements(key, group, measured.get(key, []))
            continue
        if newest.get(identity[1:], 0.0) > export_time:
            continue  # the store replaced this job after the export was written
        job = _export_job(identity, group, saved, jobs, export_time)
        jobs[job[0]] = job
        measured[job[0]] = _measurements(job[0], group, [])
        done.counts["export"] += 1
    if rows["lost"]["measurements"]:
        for key, job in jobs.items():
            if job[7] == JobStatus.OK and not measured.get(key):
                job[7], job[8] = JobStatus.FAILED.value, LOST
    for path, meta in saved:
        if meta.get("key") and meta["key"] not in jobs:
            jobs[meta["key"]] = _lost_job(path, meta)
            done.counts["saved models"] += 1
    return list(jobs.values()), [m for key in jobs for m in measured.get(key, [])]


def _agree(stored: list, group: list) -> bool:
    """Whether the stored measurements of a job are the export's rows (ids, values, errors)."""
    ours = sorted((str(m[2]), normal_value("value", m[3]), normal_value("stderr", m[4])) for m in stored)
    theirs = sorted((str(r.get("id") or r.get("metric")), normal_value("value", r.get("value")),
                     normal_value("stderr", r.get("stderr"))) for r in group if normal_value("metric", r.get("metric")))
    return len(ours) == len(theirs) and all(a[0] == b[0] and same_value(a[1], b[1]) and same_value(a[2], b[2])
                                            for a, b in zip(ours, theirs))


def _measurements(key: str, group: list, stored: list) -> list:
    """Measurement rows from an export group; the old store's direction and details where it kept them."""
    known = {str(m[2]): m for m in stored}
    out = []
    for r in group:
        metric = normal_value("metric", r.get("metric"))
        if metric is None:
            continue
        ident = normal_value("id", r.get("id")) or metric
        old = known.get(ident)
        out.append([key, metric, ident, normal_value("value", r.get("value")), normal_value("stderr", r.get("stderr")),
                    normal_value("unit", r.get("unit")) or "", normal_value("estimator", r.get("estimator")),
                    _int(normal_value("n", r.get("n"))), old[8] if old else None, normal_value("status", r.get("status")),
                    normal_value("reason", r.get("reason")) or "", old[11] if old else "{}",
                    _protocol(r.get("protocol")) or (old[12] if old else None)])
    return out


def _protocol(value) -> Optional[str]:
    """An export's protocol cell as the store keeps it (JSON text), None where it has none."""
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True) if value else None
    return normal_value("protocol", value)


def _export_job(identity: tuple, group: list, saved: list, jobs: dict, export_time: float) -> list:
    run_id, model, dataset, seed, profile = identity
    matches = [(p, m) for p, m in saved
               if _slot(m.get("model"), m.get("dataset"), m.get("seed"), m.get("profile")) == identity[1:]]
    path, meta = matches[0] if len(matches) == 1 and matches[0][1].get("key") not in jobs else (None, {})
    key = meta.get("key") or REBUILT_PREFIX + hashlib.sha256(json.dumps(identity, default=str).encode()).hexdigest()[:24]
    statuses = [normal_value("status", r.get("status")) for r in group]
    bare = [r for r in group if normal_value("metric", r.get("metric")) is None]
    if bare:
        status, reason = statuses[0] or JobStatus.FAILED.value, normal_value("reason", bare[0].get("reason")) or ""
    else:
        failed = [f"{r.get('id') or r.get('metric')}: {r.get('reason')}" for r in group
                  if normal_value("status", r.get("status")) == JobStatus.FAILED]
        status, reason = (JobStatus.FAILED.value, "; ".join(failed)) if failed else (JobStatus.OK.value, "")
    details = _source_details(normal_value("source", group[0].get("source")))
    if path is not None:
        details["artifact"] = {"path": f"{artifacts.ARTIFACTS_DIR}/{path.name}",
                               "bytes": sum(p.stat().st_size for p in path.iterdir() if p.is_file())}
    return [key, run_id, model, normal_value("family", group[0].get("family")) or meta.get("family", ""), dataset,
            _int(seed), profile, status, reason, None, _run_time(run_id, export_time),
            json.dumps(meta.get("hparams", {}), default=str), meta.get("provenance", ""), json.dumps(details)]


def _source_details(source: Optional[str]) -> dict:
    if not source:
        return {}
    kind, _, where = source.partition(" ")
    if kind not in SOURCES:
        return {}
    return {"source": kind, "loaded_from": where} if where else {"source": kind}


def _lost_job(path: Path, meta: dict) -> list:
    details = {"source": meta.get("source") or Origin.TRAINED.value,
               "artifact": {"path": f"{artifacts.ARTIFACTS_DIR}/{path.name}",
                            "bytes": sum(p.stat().st_size for p in path.iterdir() if p.is_file())}}
    created = _parse_time(str(meta.get("created", ""))[:19], "%Y-%m-%dT%H:%M:%S")
    return [meta["key"], "rebuilt", meta.get("model"), meta.get("family", ""), meta.get("dataset"),
            _int(meta.get("seed")), meta.get("profile"), JobStatus.FAILED.value, LOST, None, created or path.stat().st_mtime,
            json.dumps(meta.get("hparams", {}), default=str), meta.get("provenance", ""), json.dumps(details)]


def _runs(salvaged: list, jobs: list) -> list:
    runs = {r[0]: list(r) for r in salvaged if len(r) == 5 and isinstance(r[0], str)}
    for job in jobs:
        if job[1] not in runs:
            started = _run_time(job[1], job[10] or 0.0)
            runs[job[1]] = [job[1], started, started, job[6],
                            json.dumps({"rebuilt": "this run's record was lost with the damaged store"})]
    return list(runs.values())


def _outputs(salvaged: list, measurements: list, declarations: Mapping) -> list:
    outputs = {r[0]: list(r) for r in salvaged if len(r) == 3 and isinstance(r[0], str)}
    for m in measurements:
        name = m[1]
        if name not in outputs and name in declarations:
            metric, output = declarations[name]
            outputs[name] = [name, metric, json.dumps(output.as_dict())]
    return list(outputs.values())


# ----------------------------------------------------------------------------- small parsers


def _float(value) -> float:
    try:
        return float(value or 0.0)
    except (TypeError, ValueError):
        return 0.0


def _int(value):
    return int(value) if isinstance(value, (int, float)) and not (isinstance(value, float) and math.isnan(value)) \
        else value


def _parse_time(text: str, fmt: str) -> Optional[float]:
    try:
        return time.mktime(time.strptime(text, fmt))
    except (ValueError, OverflowError):
        return None


def _run_time(run_id, fallback: float) -> float:
    """When a run started, read from its id (``YYYYmmdd-HHMMSS-...``), else ``fallback``."""
    return _parse_time(str(run_id)[:15], "%Y%m%d-%H%M%S") or fallback
