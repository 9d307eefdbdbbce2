"""The lock of a results directory: one process writes it at a time.

The lock is an advisory ``flock`` on ``DIR/.harness-lock``, taken by whatever writes the directory's
store (``run``, ``evaluate``, ``evaluate-samples``, ``store rebuild``) and by ``run`` before it looks at
the directory. A second process is refused at once with :class:`DirectoryBusy`, naming the process that
holds it (the lock file records its pid, command line and start). The operating system drops the lock
when its process ends, however it ends (SIGKILL included), so a killed run never leaves a directory
locked. Within one process the lock is counted: the store of a run and the run's own claim share it.
The file stays in place (removing it would let two processes lock different files of one name).
Platforms without ``fcntl`` have no lock.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from harness.errors import UserError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

LOCK_NAME = ".harness-lock"

_held: dict = {}  # resolved directory -> [file descriptor, count]


class DirectoryBusy(UserError):
    """Another process is writing the results directory."""


def acquire(directory) -> None:
    """Lock ``directory`` (created if missing) for this process, or raise :class:`DirectoryBusy`."""
    directory = Path(directory).resolve()
    if directory in _held:
        _held[directory][1] += 1
        return
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    if fcntl is not None:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = _holder(fd)
            os.close(fd)
            raise DirectoryBusy(f"{directory} is being written by another harness process{holder}; wait for it "
                                "to finish (then add --resume to continue its work) or choose another --out") from None
    _record(fd)
    _held[directory] = [fd, 1]


def release(directory) -> None:
    """Undo one :func:`acquire` of ``directory``; the last one unlocks it."""
    directory = Path(directory).resolve()
    entry = _held.get(directory)
    if entry is None:
        return
    entry[1] -= 1
    if entry[1] == 0:
        del _held[directory]
        os.close(entry[0])  # closing the descriptor drops the flock


def held(directory) -> bool:
    """Whether this process holds the lock of ``directory``."""
    return Path(directory).resolve() in _held


def _record(fd: int) -> None:
    """Who holds the lock, for the message another process prints (best effort: a full disk only
    loses the description, not the lock)."""
    text = json.dumps({"pid": os.getpid(), "command": " ".join(sys.argv[:8]),
                       "since": time.strftime("%Y-%m-%d %H:%M:%S")})
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, text.encode(), 0)
    except OSError:
        pass


def _holder(fd: int) -> str:
    try:
        info = json.loads(os.pread(fd, 4096, 0).decode() or "{}")
    except (OSError, ValueError):
        return ""
    if not isinstance(info, dict) or "pid" not in info:
        return ""
    return f" (pid {info['pid']}, `{info.get('command', '?')}`, since {info.get('since', '?')})"
