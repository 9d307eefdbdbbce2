"""What ``run`` does before it writes into ``--out``: lock the directory, then continue it
(``--resume``), start it afresh (``--overwrite``) or refuse to mix a new run into earlier results.

A directory that holds anything (other than the lock file) is an earlier run's, or someone's files:
without ``--resume`` or ``--overwrite`` the run is refused (exit 2) before anything is written, so a
second run never silently replaces the jobs it shares with the first. ``--overwrite`` deletes what
harness writes there (:data:`WRITTEN`: the store, results and reports, config.toml, the saved models
and caches) and leaves every other file alone; ``--resume`` first checks that the store reads whole
(:mod:`harness.storage.health`).
"""

from __future__ import annotations

import contextlib
import shutil
import sqlite3
import sys
from pathlib import Path

from harness.errors import UserError
from harness.storage import health, lock

STORE_FILES = ("results.sqlite", "results.sqlite-wal", "results.sqlite-shm", "results.sqlite-journal")
WRITTEN = STORE_FILES + ("results.csv", "results.json", "report.md", "report.html", "tables.tex", "comparison.md",
                         "comparison.html", "config.toml", "artifacts", "cache")


def contents(directory: Path) -> list:
    """The entries of ``directory`` other than the lock file, sorted (empty when it does not exist)."""
    if not directory.is_dir():
        return []
    return sorted(p.name for p in directory.iterdir() if p.name != lock.LOCK_NAME)


@contextlib.contextmanager
def claim_output(out, resume: bool, overwrite: bool):
    """Hold ``out``'s lock for the run; refuse a non-empty ``out`` without ``resume`` or ``overwrite``,
    empty it of harness's files with ``overwrite``, check its store with ``resume``."""
    out = Path(out)
    if resume and overwrite:
        raise UserError("--resume continues the results in --out and --overwrite deletes them: give one")
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file; give a directory")
    lock.acquire(out)
    try:
        present = contents(out)
        if present and overwrite:
            _delete(out)
        elif present and resume:
            _check_store(out)
        elif present:
            listed = ", ".join(present[:6]) + (f" and {len(present) - 6} more" if len(present) > 6 else "")
            raise UserError(f"{out} is not empty ({listed}): add --resume to keep its results and run only the "
                            "jobs it does not hold yet, or --overwrite to delete its results and start afresh, "
                            "or choose another --out")
        yield out
    finally:
        lock.release(out)


def _check_store(out: Path) -> None:
    path = out / STORE_FILES[0]
    if not path.exists():
        return
    db = sqlite3.connect(path.resolve().as_uri() + "?mode=ro", uri=True)
    try:
        health.verify(db, path)
    finally:
        db.close()


def _delete(out: Path) -> None:
    removed = []
    for name in WRITTEN:
        path = out / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()
        else:
            continue
        removed.append(name)
    for path in out.glob("*.tmp"):  # a report file a killed writer left half-written
        path.unlink()
    if removed:
        print(f"--overwrite: deleted {', '.join(removed)} from {out}", file=sys.stderr)
