"""Every finding about a results directory (``harness store check DIR``).

Three things are checked, each independently of the others, so one damaged part never hides the
state of the rest:

- the store: SQLite's full ``integrity_check``, its header and its tables;
- the saved models: every artifact's meta.json reads and its state file has the size and sha256 the
  meta records; a job the store says saved a model has its folder; a model whose job the store does
  not hold, and temporaries a killed writer left, are noted;
- results.csv and results.json against the store, row by row (floats to 1e-9 relative: results.json
  keeps ten significant digits). Files older than the store's newest job are noted as stale (a run
  killed before its reports), not as damage: ``harness report DIR`` rewrites them.

A finding is an ``error`` (damage: something disagrees or does not read) or a ``note``.
"""

from __future__ import annotations

import csv
import json
import math
import sqlite3
from dataclasses import asdict, dataclass
from pathlib import Path

from harness import artifacts
from harness.storage import health

ERROR, NOTE = "error", "note"
STORE_NAME = "results.sqlite"
IDENTITY = ("run_id", "model", "dataset", "seed", "profile", "metric", "id")
VALUES = ("family", "value", "stderr", "unit", "estimator", "n", "status", "reason", "source")
NUMERIC = ("value", "stderr", "n")


@dataclass
class Finding:
    severity: str
    subject: str
    message: str

    def as_dict(self) -> dict:
        return asdict(self)


def check_directory(directory) -> list:
    """Every :class:`Finding` about ``directory`` (empty: nothing wrong)."""
    directory = Path(directory)
    findings, jobs, df = _check_store(directory)
    findings += _check_artifacts(directory, jobs)
    if df is not None:
        newest = max((j["finished"] or 0 for j in jobs), default=0)
        for name in ("results.csv", "results.json"):
            findings += _check_export(directory / name, df, newest)
    return findings


# ----------------------------------------------------------------------------- the store


def _check_store(directory: Path) -> tuple:
    """(findings, stored jobs, tidy results or None when the store does not read)."""
    path = directory / STORE_NAME
    if not path.is_file():
        return [Finding(ERROR, STORE_NAME, f"{path} does not exist; `python -m harness store rebuild {directory}` "
                                           "makes one from results.json and the saved models")], [], None
    db = sqlite3.connect(path.resolve().as_uri() + "?mode=ro", uri=True)
    try:
        problem = health.problem(db, path)
        if problem is None:
            messages = [r[0] for r in db.execute("PRAGMA integrity_check").fetchall() if r[0] != "ok"]
            if messages:
                problem = f"is damaged ({'; '.join(messages[:5])})"
    except sqlite3.DatabaseError as exc:
        problem = f"is damaged ({exc})"
    finally:
        db.close()
    if problem is not None:
        return [Finding(ERROR, STORE_NAME, health.damage_message(path, problem, checking=True))], [], None
    from harness.store import Store

    store = Store(directory, read_only=True)
    try:
        jobs, df = store.jobs(), store.results()
    finally:
        store.close()
    return [], jobs, df


# ----------------------------------------------------------------------------- saved models


def _check_artifacts(directory: Path, jobs: list) -> list:
    root = artifacts.artifacts_dir(directory)
    findings = []
    stored = {j["key"] for j in jobs}
    found = set()
    if root.is_dir():
        for path in sorted(root.iterdir()):
            if not path.is_dir():
                continue
            if path.name.startswith(artifacts.TEMP_PREFIX):
                findings.append(Finding(NOTE, f"artifacts/{path.name}", "a temporary folder a killed writer left; "
                                        "the next `run` into this directory removes it"))
                continue
            if path.name.startswith("."):
                continue
            try:
                meta = artifacts.verify(path)
            except artifacts.ArtifactError as exc:
                findings.append(Finding(ERROR, f"artifacts/{path.name}", str(exc)))
                continue
            found.add(meta["key"])
            if jobs and meta["key"] not in stored:
                findings.append(Finding(NOTE, f"artifacts/{path.name}", "the store holds no job of this model (a job "
                                        "stopped between saving it and storing its result); `run --resume` runs it "
                                        "again"))
    for job in jobs:
        record = job["details"].get("artifact")
        if isinstance(record, dict) and job["key"] not in found and not (directory / str(record.get("path"))).is_dir():
            findings.append(Finding(ERROR, f"{job['model']}/{job['dataset']}/seed{job['seed']}",
                                    f"the store records a saved model at {record.get('path')}, which is missing"))
    return findings


# ----------------------------------------------------------------------------- results.csv and results.json


def _check_export(path: Path, df, newest: float) -> list:
    if not path.is_file():
        return [Finding(NOTE, path.name, f"missing; `python -m harness report {path.parent}` writes it")]
    try:
        exported = _read_export(path)
    except (OSError, ValueError, csv.Error) as exc:
        return [Finding(ERROR, path.name, f"does not read ({exc})")]
    json_file = path.suffix == ".json"  # JSON has no infinity: pandas writes it as null
    stored = _grouped(df.to_dict(orient="records"), finite=json_file)
    theirs = _grouped(exported, finite=json_file)
    if path.stat().st_mtime < newest:
        missing = sum(len(v) for k, v in stored.items() if k not in theirs)
        return [Finding(NOTE, path.name, f"older than the store's newest job ({missing} row(s) of the store are "
                                         f"not in it); `python -m harness report {path.parent}` rewrites it")]
    findings = []
    for identity in sorted(set(stored) | set(theirs), key=str):
        ours, other = stored.get(identity, []), theirs.get(identity, [])
        label = "/".join(str(v) for v in identity[1:] if v is not None)
        if len(ours) != len(other):
            where = "only in the store" if not other else f"only in {path.name}" if not ours else \
                f"{len(ours)} row(s) in the store, {len(other)} in {path.name}"
            findings.append(Finding(ERROR, path.name, f"{label}: {where}"))
            continue
        for a, b in zip(sorted(ours, key=str), sorted(other, key=str)):
            differ = [name for name, x, y in zip(VALUES, a, b) if not same_value(x, y)]
            if differ:
                shown = ", ".join(f"{n} {x!r} in the store, {y!r} here" for n, x, y in zip(VALUES, a, b) if n in differ)
                findings.append(Finding(ERROR, path.name, f"{label}: {shown}"))
    return findings


def _read_export(path: Path) -> list:
    if path.suffix == ".json":
        rows = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            raise ValueError("not a list of rows")
        return rows
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _grouped(rows: list, finite: bool) -> dict:
    out: dict = {}
    for row in rows:
        identity = tuple(normal_value(name, row.get(name), finite) for name in IDENTITY)
        out.setdefault(identity, []).append(tuple(normal_value(name, row.get(name), finite) for name in VALUES))
    return out


def normal_value(name: str, value, finite: bool = False):
    if value is None or value == "" or (isinstance(value, float) and math.isnan(value)):
        return None
    if name in NUMERIC or name == "seed":
        try:
            number = float(value)
        except (TypeError, ValueError):
            return str(value)
        if math.isnan(number) or (finite and math.isinf(number)):
            return None
        return int(number) if name == "seed" and number.is_integer() else number
    return str(value)


def same_value(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return a == b or math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-300)
    return a == b
