"""The rows of a damaged store that still read.

The store (and its write-ahead log, which holds the newest committed transactions) is copied into a
scratch folder inside the results directory and opened there, so reading never changes the damaged
file. Each table is read in rowid order; where SQLite stops at a damaged page, the reading skips
ahead to the next rowid that reads (found by doubling, then bisection), so only the rows stored on
damaged pages are lost. Nothing raises: a file SQLite cannot open at all salvages nothing.
"""

from __future__ import annotations

import shutil
import sqlite3
import tempfile
from pathlib import Path

TABLES = ("runs", "jobs", "measurements", "outputs")
MAX_ROWID = 1 << 62


def salvage(path) -> dict:
    """Table name -> list of row tuples (in column order, rowid dropped) of every row that reads; plus
    ``"lost"``: table name -> whether some rows of it could not be read."""
    path = Path(path)
    found = {table: [] for table in TABLES}
    found["lost"] = {table: False for table in TABLES}
    if not path.is_file():
        return found
    with tempfile.TemporaryDirectory(prefix=".salvage-", dir=path.parent) as scratch:
        copy = Path(scratch) / path.name
        try:
            shutil.copyfile(path, copy)
            wal = path.with_name(path.name + "-wal")
            if wal.is_file():
                shutil.copyfile(wal, copy.with_name(copy.name + "-wal"))
            db = sqlite3.connect(copy)
        except (OSError, sqlite3.Error):
            found["lost"] = {table: True for table in TABLES}
            return found
        try:
            for table in TABLES:
                found[table], found["lost"][table] = _read_table(db, table)
        finally:
            db.close()
    return found


def _read_table(db: sqlite3.Connection, table: str) -> tuple:
    rows, lost, after = [], False, 0
    while True:
        try:
            for row in db.execute(f"SELECT rowid, * FROM {table} WHERE rowid > ? ORDER BY rowid", (after,)):
                rows.append(tuple(row[1:]))
                after = row[0]
            return rows, lost
        except sqlite3.DatabaseError as exc:
            if "no such table" in str(exc):
                return rows, False
            lost = True
            resume_at = _next_readable(db, table, after)
            if resume_at is None:
                return rows, lost
            after = resume_at


def _reads_from(db, table: str, start: int) -> bool:
    try:
        db.execute(f"SELECT rowid FROM {table} WHERE rowid > ? ORDER BY rowid LIMIT 1", (start,)).fetchall()
        return True
    except sqlite3.DatabaseError:
        return False


def _next_readable(db, table: str, start: int):
    """The smallest ``s > start`` from which a scan reads again (rows after a damaged page), or None."""
    step = 1
    while not _reads_from(db, table, start + step):
        step *= 2
        if start + step > MAX_ROWID:
            return None
    low, high = start + step // 2, start + step  # the scan fails from low (or low is start), reads from high
    while high - low > 1:
        middle = (low + high) // 2
        if _reads_from(db, table, middle):
            high = middle
        else:
            low = middle
    return high
