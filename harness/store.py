"""The results store: SQLite in the output directory, written as each job ends.

Each job's rows go in one transaction keyed by the job's hash, so a run killed at any moment keeps
every job it had finished and none half-written; ``--resume`` skips keys already stored as ok. Opening
a store checks its integrity first, and opening one to write takes the directory's lock
(:mod:`harness.storage`); a write the disk refuses leaves the store as it was.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import time
from pathlib import Path
from typing import Iterable, Mapping, Optional

import pandas as pd

from harness.jobs import JobStatus, Origin
from harness.storage import full, health, lock

STORE_NAME = "results.sqlite"
REBUILT_PREFIX = "rebuilt-"  # the key of a job `store rebuild` found without its own (harness.storage.rebuild)

# Columns of results.csv, one measurement a row. ``id`` is the measurement's identity: its name, or
# ``name@n`` where the sample count is part of what the number means (``fid@2000``). ``source`` is where
# the measured model came from: ``trained`` (fitted by the job), or ``artifact PATH`` (a model saved by an
# earlier job), ``checkpoint PATH`` (a weights file), ``samples PATH`` (samples from another generator).
# ``protocol`` is the measurement's protocol as JSON (the settings that change what the number means;
# empty for a row stored before protocols were recorded).
RESULT_COLUMNS = ["run_id", "model", "family", "dataset", "seed", "profile", "metric", "id", "value", "stderr", "unit",
                  "estimator", "n", "status", "reason", "source", "protocol"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY, started REAL, finished REAL, profile TEXT, info TEXT
);
CREATE TABLE IF NOT EXISTS jobs (
    key TEXT PRIMARY KEY, run_id TEXT, model TEXT, family TEXT, dataset TEXT, seed INTEGER, profile TEXT,
    status TEXT, reason TEXT, seconds REAL, finished REAL, hparams TEXT, dataset_provenance TEXT, details TEXT
);
CREATE TABLE IF NOT EXISTS measurements (
    key TEXT, metric TEXT, id TEXT, value REAL, stderr REAL, unit TEXT, estimator TEXT, n INTEGER,
    higher_is_better INTEGER, status TEXT, reason TEXT, details TEXT, protocol TEXT
);
CREATE INDEX IF NOT EXISTS measurements_key ON measurements(key);
CREATE TABLE IF NOT EXISTS outputs (
    name TEXT PRIMARY KEY, metric TEXT, declaration TEXT
);
"""


class Store:
    """The results store of one output directory. ``read_only`` opens an existing store without
    creating or changing anything (reports, the regression gate)."""

    def __init__(self, directory: Path, read_only: bool = False):
        self.directory = Path(directory)
        self.path = self.directory / STORE_NAME
        self.read_only = read_only
        if read_only:
            find_store(self.directory)
            self.db = sqlite3.connect(self.path.resolve().as_uri() + "?mode=ro", uri=True)
            try:
                health.verify(self.db, self.path)
                self.db.execute("SELECT COUNT(*) FROM jobs").fetchone()
            except sqlite3.DatabaseError as exc:
                self.db.close()
                from harness.contracts import UserError

                raise UserError(f"{self.path} is not a harness results store: {exc}") from None
            except BaseException:
                self.db.close()
                raise
            return
        lock.acquire(self.directory)  # one writing process per directory (harness.storage.lock)
        existed = self.path.exists()
        try:
            self.db = sqlite3.connect(self.path, isolation_level=None)  # explicit transactions below
        except sqlite3.Error as exc:
            lock.release(self.directory)
            raise full.store_write_failed(exc, self.path, "the store") from None
        try:
            if existed:
                health.verify(self.db, self.path)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.executescript(SCHEMA)
            if not self._has_protocol():  # a store written before protocols were recorded: old rows keep NULL
                self.db.execute("ALTER TABLE measurements ADD COLUMN protocol TEXT")
        except BaseException as exc:
            self.close()
            if isinstance(exc, sqlite3.Error) and full.is_write_failure(exc):
                raise full.store_write_failed(exc, self.path, "the store's tables") from None
            raise

    def _has_protocol(self) -> bool:
        return any(row[1] == "protocol" for row in self.db.execute("PRAGMA table_info(measurements)"))

    def close(self) -> None:
        if self.db is None:
            return
        self.db.close()
        self.db = None
        if not self.read_only:
            lock.release(self.directory)

    @contextlib.contextmanager
    def _transaction(self, what: str):
        """One write transaction; a write the disk refuses is :class:`harness.storage.full.StoreWriteFailed`
        after the rollback (the store then holds exactly what it held before)."""
        try:
            self.db.execute("BEGIN IMMEDIATE")
            yield
            self.db.execute("COMMIT")
        except BaseException as exc:
            with contextlib.suppress(sqlite3.Error):
                self.db.execute("ROLLBACK")  # SQLite may have rolled back already
            if isinstance(exc, sqlite3.Error) and full.is_write_failure(exc):
                raise full.store_write_failed(exc, self.path, what) from None
            raise

    # ------------------------------------------------------------------ writes
    def start_run(self, run_id: str, profile: str, info: dict) -> None:
        with self._transaction("the run's record"):
            self.db.execute("INSERT OR REPLACE INTO runs VALUES (?, ?, NULL, ?, ?)",
                            (run_id, time.time(), profile, json.dumps(info, default=str)))

    def record_outputs(self, metric_specs) -> None:
        """Store every metric's output declarations, so reports and the regression gate read a results
        directory with the directions, kinds, tolerances and order it was made with."""
        rows = [(o.name, spec.name, json.dumps(o.as_dict())) for spec in metric_specs for o in spec.outputs]
        with self._transaction("the metrics' declarations"):
            self.db.executemany("INSERT OR REPLACE INTO outputs VALUES (?, ?, ?)", rows)

    def outputs(self, known: Optional[Mapping] = None) -> dict:
        """Measurement name -> :class:`harness.contracts.Output`, as declared when the results were made.

        A declaration stored before outputs declared their role and scaling takes them from ``known``'s
        declaration of the same output (the installed metrics'), if there is one
        (:meth:`~harness.contracts.Output.from_dict`)."""
        from harness.contracts import Output

        known = known or {}
        try:
            rows = self.db.execute("SELECT name, declaration FROM outputs").fetchall()
        except sqlite3.OperationalError:  # a store written before declarations were stored
            return {}
        return {name: Output.from_dict(json.loads(decl), known.get(name)) for name, decl in rows}

    def update_run_info(self, run_id: str, info: dict) -> None:
        """Replace a run's info (what a run learns only as it goes, such as its machine's calibration)."""
        with self._transaction("the run's record"):
            self.db.execute("UPDATE runs SET info = ? WHERE run_id = ?", (json.dumps(info, default=str), run_id))

    def finish_run(self, run_id: str) -> None:
        with self._transaction("the run's record"):
            self.db.execute("UPDATE runs SET finished = ? WHERE run_id = ?", (time.time(), run_id))

    def record_job(self, job, result, run_id: str) -> None:
        """Replace everything stored under ``job.key`` with this result, atomically."""
        rows = [
            (job.key, m.metric, m.id or m.metric, m.value, m.stderr, m.unit, m.estimator, m.n, int(m.higher_is_better),
             status, reason, json.dumps(m.details, default=str),
             json.dumps(m.protocol, sort_keys=True) if status == JobStatus.OK else None)
            for m, status, reason in result.rows()
        ]
        with self._transaction(f"the result of {job.label}"):
            self._supersede_rebuilt(job)
            self.db.execute("DELETE FROM measurements WHERE key = ?", (job.key,))
            self.db.execute(
                "INSERT OR REPLACE INTO jobs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (job.key, run_id, job.model, job.family, job.dataset, job.seed, job.profile, result.status,
                 result.reason, result.seconds, time.time(), json.dumps(job.hparams, default=str),
                 job.provenance, json.dumps(result.details, default=str)),
            )
            self.db.executemany("INSERT INTO measurements (key, metric, id, value, stderr, unit, estimator, n, "
                                "higher_is_better, status, reason, details, protocol) "
                                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)

    def _supersede_rebuilt(self, job) -> None:
        """Drop the jobs ``store rebuild`` could not give their key (``rebuilt-...``) that this job is."""
        same = ("SELECT key FROM jobs WHERE key LIKE ? AND model = ? AND dataset = ? AND seed = ? AND profile = ?",
                (REBUILT_PREFIX + "%", job.model, job.dataset, job.seed, job.profile))
        self.db.execute(f"DELETE FROM measurements WHERE key IN ({same[0]})", same[1])
        self.db.execute(f"DELETE FROM jobs WHERE key IN ({same[0]})", same[1])

    # ------------------------------------------------------------------ reads
    def job_status(self, key: str) -> Optional[str]:
        row = self.db.execute("SELECT status FROM jobs WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def jobs(self) -> list:
        """Every stored job as a dict (key, model, family, dataset, seed, profile, status, reason, finished,
        hparams, provenance, details), oldest first."""
        cur = self.db.execute("SELECT key, model, family, dataset, seed, profile, status, reason, finished, hparams, "
                              "dataset_provenance, details FROM jobs ORDER BY finished")
        names = ["key", "model", "family", "dataset", "seed", "profile", "status", "reason", "finished", "hparams",
                 "provenance", "details"]
        rows = [dict(zip(names, r)) for r in cur]
        for row in rows:
            row["hparams"] = json.loads(row["hparams"] or "{}")
            row["details"] = json.loads(row["details"] or "{}")
        return rows

    def runs(self) -> list:
        cur = self.db.execute("SELECT run_id, started, finished, profile, info FROM runs ORDER BY started")
        return [dict(run_id=r[0], started=r[1], finished=r[2], profile=r[3], info=json.loads(r[4] or "{}"))
                for r in cur]

    def results(self, keys: Optional[Iterable[str]] = None) -> pd.DataFrame:
        """Tidy results, one measurement a row; a job with no measurement gives one row with its status.
        ``protocol`` is the measurement's protocol as JSON, None where it was not recorded."""
        protocol = "m.protocol" if self._has_protocol() else "NULL"
        query = f"""
            SELECT j.run_id, j.model, j.family, j.dataset, j.seed, j.profile,
                   m.metric, m.id, m.value, m.stderr, m.unit, m.estimator, m.n, {protocol} AS protocol,
                   COALESCE(m.status, j.status) AS status,
                   COALESCE(m.reason, j.reason) AS reason,
                   m.higher_is_better, m.details, j.key, j.seconds, j.finished, j.hparams,
                   j.dataset_provenance, j.details AS job_details,
                   CASE WHEN j.status = ? THEN NULL
                        ELSE COALESCE(json_extract(j.details, '$.source'), ?)
                             || COALESCE(' ' || json_extract(j.details, '$.loaded_from'), '') END AS source
            FROM jobs j LEFT JOIN measurements m ON m.key = j.key
            ORDER BY j.dataset, j.model, j.seed, m.rowid
        """
        df = pd.read_sql_query(query, self.db, params=(JobStatus.SKIPPED.value, Origin.TRAINED.value))
        if keys is not None:
            df = df[df["key"].isin(set(keys))]
        return df.reset_index(drop=True)


def find_store(directory) -> Path:
    path = Path(directory) / STORE_NAME
    if not path.exists():
        from harness.contracts import UserError

        raise UserError(f"no results in {directory} (expected {path}); run `python -m harness run --out {directory}` first")
    return path
