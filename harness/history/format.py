"""The history file: JSON Lines, one record set (one results directory at one commit) a line, append-only.

Every line is a JSON object written by one ``write`` on a descriptor opened with ``O_APPEND`` while an
exclusive ``fcntl`` lock is held, so processes appending at the same time never interleave or lose a
line. A reader takes every line in file order; a line never changes once written. docs/regression.md
("Metric history") documents the fields, so other tools can write the file too:

- ``format`` (``"harness-history"``) and ``version`` (:data:`VERSION`); a reader refuses a version it
  does not know;
- ``commit`` (the full hash), ``commit_date`` (the committer date git records, ISO 8601, or null),
  ``subject`` (the commit's first line, or null);
- ``date`` (when the run finished, ISO 8601 UTC), ``added`` (when the line was appended),
  ``source`` (the results directory), ``runs`` (the run ids it holds);
- ``machines``: machine id -> ``{"description", "fingerprint", "calibration"}``;
- ``environment``: the package versions the run recorded (harness, torch, python, platform, plugins);
- ``records``: one object per (model, dataset, metric identity), see :class:`harness.history.records.Record`.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from harness.contracts import UserError

FORMAT = "harness-history"
VERSION = 1
REQUIRED = ("commit", "date", "records")
RECORD_REQUIRED = ("dataset", "model", "id", "mean")


@dataclass
class RecordSet:
    """One line of the history: a results directory summarised at one commit."""

    commit: str
    date: str
    records: list  # dicts, as documented in harness.history.records.Record
    commit_date: Optional[str] = None
    subject: Optional[str] = None
    added: Optional[str] = None
    source: str = ""
    runs: list = field(default_factory=list)
    machines: dict = field(default_factory=dict)
    environment: dict = field(default_factory=dict)
    line: int = 0  # where it is in the file (1-based), for messages

    def to_line(self) -> str:
        doc = {"format": FORMAT, "version": VERSION, "commit": self.commit, "commit_date": self.commit_date,
               "subject": self.subject, "date": self.date, "added": self.added, "source": self.source,
               "runs": list(self.runs), "machines": self.machines, "environment": self.environment,
               "records": self.records}
        return json.dumps(doc, sort_keys=False, separators=(",", ":"), default=str, allow_nan=False) + "\n"

    @property
    def order(self) -> tuple:
        """Where the set goes on a curve: by commit date (the run's date when unknown), then run date."""
        return (instant(self.commit_date or self.date), instant(self.date), self.line)


def instant(text: Optional[str]) -> dt.datetime:
    """An ISO 8601 date as an aware UTC datetime (dates of other time zones compare correctly); the
    earliest datetime when it is missing or unreadable."""
    try:
        when = dt.datetime.fromisoformat(str(text))
    except ValueError:
        return dt.datetime.min.replace(tzinfo=dt.timezone.utc)
    return (when if when.tzinfo else when.replace(tzinfo=dt.timezone.utc)).astimezone(dt.timezone.utc)


def parse_line(text: str, where: str) -> RecordSet:
    """One line of a history file as a :class:`RecordSet`; :class:`UserError` naming ``where`` if it is not
    a record set this version can read."""
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserError(f"{where} is not JSON ({exc.msg}); a history file holds one JSON object a line "
                        "(remove or repair that line)") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise UserError(f"{where} is not a harness history record set (no \"format\": \"{FORMAT}\")")
    version = doc.get("version")
    if version != VERSION:
        raise UserError(f"{where} has history format version {version!r}; this harness reads version {VERSION} "
                        "(a newer harness wrote it: upgrade harness, or keep that history in another file)")
    missing = [k for k in REQUIRED if doc.get(k) in (None, "")]
    if missing or not isinstance(doc["records"], list):
        raise UserError(f"{where} lacks {', '.join(missing) or 'a list of records'}")
    for i, rec in enumerate(doc["records"]):
        gaps = [k for k in RECORD_REQUIRED if not isinstance(rec, dict) or rec.get(k) is None]
        if gaps:
            raise UserError(f"{where}, record {i + 1}, lacks {', '.join(gaps)}")
    known = {k: doc.get(k) for k in ("commit_date", "subject", "added")}
    return RecordSet(commit=str(doc["commit"]), date=str(doc["date"]), records=doc["records"],
                     source=str(doc.get("source") or ""), runs=list(doc.get("runs") or []),
                     machines=dict(doc.get("machines") or {}), environment=dict(doc.get("environment") or {}),
                     **known)


def _parse_all(text: str, path: Path) -> list:
    sets = []
    for n, line in enumerate(text.splitlines(), 1):
        if line.strip():
            record_set = parse_line(line, f"{path}, line {n},")
            record_set.line = n
            sets.append(record_set)
    return sets


def read_history(path) -> list:
    """Every record set of the history file ``path``, in file order (:class:`UserError` if it is missing)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"no history at {path}; make one with `python -m harness history add RESULTS_DIR "
                        f"--history {path}`")
    return _parse_all(path.read_text(encoding="utf-8"), path)


def append(path, record_set: RecordSet) -> bool:
    """Append ``record_set`` to the history file ``path`` (created with its folder when missing), under an
    exclusive lock. False, and nothing written, when a line with the same commit and runs is there already:
    adding the same results twice is a no-op."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = record_set.to_line().encode("utf-8")
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        if _already_there(fd, path, record_set):
            return False
        view = memoryview(data)
        while view:  # one write in practice; a short write (a full disk) continues where it stopped
            written = os.write(fd, view)
            view = view[written:]
        os.fsync(fd)
        return True
    finally:
        os.close(fd)  # releases the lock


def _already_there(fd: int, path: Path, record_set: RecordSet) -> bool:
    if not record_set.runs:
        return False
    size = os.fstat(fd).st_size
    text = os.pread(fd, size, 0).decode("utf-8") if size else ""
    runs = sorted(record_set.runs)
    return any(s.commit == record_set.commit and sorted(s.runs) == runs for s in _parse_all(text, path))
