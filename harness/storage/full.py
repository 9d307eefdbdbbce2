"""Writes that fail for lack of space (a full disk, a quota, a file size limit), told as such.

A job whose files cannot be written fails with the reason (:func:`describe`) and the run goes on; a
result that cannot be written to the store stops the run with :class:`StoreWriteFailed` (each job is
one transaction, so the store keeps every job written before, whole). The command line prints either
without a traceback and exits 1; ``run --resume`` completes the run once there is space again.
"""

from __future__ import annotations

import errno
import os
import re
import sqlite3

NO_SPACE = frozenset({errno.ENOSPC, errno.EFBIG, errno.EDQUOT})
_RUST_OS_ERROR = re.compile(r"os error (\d+)")
ADVICE = "free space (or raise the limit), then rerun with --resume: every job finished before is kept"


class StoreWriteFailed(OSError):
    """A result that could not be written to the store; the store keeps what it held before."""


def no_space_errno(exc: BaseException):
    """The errno (ENOSPC, EFBIG, EDQUOT) when ``exc``, or an exception it was raised from, says there was
    no room to write; None otherwise. Libraries that write through Rust (safetensors) raise their own
    error carrying the OS's as ``(os error N)``."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in NO_SPACE:
            return exc.errno
        match = _RUST_OS_ERROR.search(str(exc))
        if match and int(match.group(1)) in NO_SPACE:
            return int(match.group(1))
        exc = exc.__cause__ or exc.__context__
    return None


def is_no_space(exc: BaseException) -> bool:
    return no_space_errno(exc) is not None


def describe(exc: BaseException) -> str:
    """``cannot write FILE: No space left on device (...)``: what failed, and what to do."""
    code = no_space_errno(exc)
    if isinstance(exc, OSError) and (code is None or exc.errno == code):
        where = f" {exc.filename}" if getattr(exc, "filename", None) else ""
        why = exc.strerror or str(exc)
    else:
        where, why = "", f"{os.strerror(code) if code else type(exc).__name__} ({type(exc).__name__}: {exc})"
    if code == errno.EFBIG:
        why += " (a file size limit was reached)"
    return f"cannot write{where}: {why}; {ADVICE}"


def is_write_failure(exc: sqlite3.Error) -> bool:
    """Whether SQLite's error says the disk refused the write (full, a size limit, an I/O error)."""
    name = getattr(exc, "sqlite_errorname", "")  # Python 3.11+
    if name:
        return name.startswith(("SQLITE_FULL", "SQLITE_IOERR"))
    return any(text in str(exc).lower() for text in ("disk is full", "disk i/o error"))


def store_write_failed(exc: sqlite3.Error, path, what: str) -> StoreWriteFailed:
    """The :class:`StoreWriteFailed` for SQLite's error ``exc`` while writing ``what`` into ``path``."""
    full = "full" in str(exc).lower()
    failure = StoreWriteFailed(errno.ENOSPC if full else errno.EIO,
                               f"{'no space left' if full else 'I/O error'} ({exc})")
    failure.filename = f"{path} ({what})"
    return failure
