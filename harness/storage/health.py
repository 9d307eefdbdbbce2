"""A store's integrity when it is opened, and what a user is told when it is damaged or foreign.

Every open of a results store (:class:`harness.store.Store`) runs :func:`verify` first: SQLite's
``quick_check`` (every page of every table and index is read and its structure checked, in
milliseconds for a results store) and the presence of the ``jobs`` table. A damaged file (a crash on a
network filesystem, a disk error, bytes overwritten) or a database some other program wrote is then a
:class:`StoreDamaged` error (exit 2) that says what is wrong and what to do, instead of an SQLite
traceback part way through a command. Damage inside a value (a number's bytes changed) is invisible
to SQLite; ``store check`` finds it by comparing the store with results.csv and results.json.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Optional

from harness.errors import UserError
from harness.storage import full

SQLITE_HEADER = b"SQLite format 3\x00"
REQUIRED_TABLES = ("runs", "jobs", "measurements")


class StoreDamaged(UserError):
    """A results store that SQLite cannot read whole, or that is not a harness results store."""


def problem(db: sqlite3.Connection, path: Path) -> Optional[str]:
    """What is wrong with the open store ``db`` at ``path`` (None when it is sound)."""
    try:
        with open(path, "rb") as f:
            head = f.read(len(SQLITE_HEADER))
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc})"
    if head and head != SQLITE_HEADER:
        return "does not start with SQLite's header (its first bytes were overwritten, or another program wrote it)"
    try:
        rows = db.execute("PRAGMA quick_check").fetchall()
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    except sqlite3.DatabaseError as exc:
        if full.is_write_failure(exc):  # the disk refused (a full disk, a size limit): not damage
            raise full.store_write_failed(exc, path, "opening it writes its shared-memory index") from None
        return f"is damaged ({exc})"
    findings = [r[0] for r in rows if r and r[0] != "ok"]
    if findings:
        more = f" and {len(findings) - 3} more" if len(findings) > 3 else ""
        return f"is damaged ({'; '.join(findings[:3])}{more})"
    if tables and not set(REQUIRED_TABLES) <= tables:
        return (f"is not a harness results store (its tables: {', '.join(sorted(tables))}); --out or DIR may name "
                "another program's directory")
    return None


def verify(db: sqlite3.Connection, path: Path) -> None:
    """Raise :class:`StoreDamaged` with advice when the store ``db`` at ``path`` is not sound."""
    found = problem(db, path)
    if found is not None:
        raise StoreDamaged(damage_message(path, found))


def damage_message(path: Path, found: str, checking: bool = False) -> str:
    """What is wrong with the store at ``path`` and what to do; ``checking``: for `store check`, which
    lists the rest itself."""
    directory = Path(path).parent
    if found.startswith("is not a harness results store"):
        return f"{path} {found}. Choose another directory, or move the file away."
    if checking:
        return (f"{path} {found}; `python -m harness store rebuild {directory}` makes a new store from what is "
                "intact (the damaged file is kept beside it)")
    return (f"{path} {found}. What else {directory} holds (results.json, results.csv, the saved models) is "
            f"checked apart: `python -m harness store check {directory}` lists what is damaged, and "
            f"`python -m harness store rebuild {directory}` makes a new store from results.json, the saved models "
            f"and every row of the old store that still reads (the damaged file is kept beside it). To start "
            f"afresh instead: `python -m harness run ... --out {directory} --overwrite`.")
