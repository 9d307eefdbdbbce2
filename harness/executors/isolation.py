"""Isolated workers: each job in a child process that its owner can kill.

The child (``python -m harness.executors.child``, see :mod:`harness.executors.child`) builds a
:class:`~harness.worker.JobRunner` from the coordinator's :class:`~harness.worker.WorkerSetup` once,
then runs jobs one at a time: a pickled :class:`~harness.jobs.Job` in, a pickled
:class:`~harness.jobs.JobResult` out. Both travel as bytes, so whoever relays them (a Ray task on a
cluster node) never needs to import the plugins.

The owner (the process pool in the coordinator, or a Ray task) enforces the time limit from outside:
a job that has not answered :func:`kill_after` seconds after it was handed over is killed with its
worker (SIGKILL stops a hang in native code too, which the job runner's SIGALRM cannot), and a worker
that dies (a segfault, the out-of-memory killer, a kill) is reported with its signal or exit code.
The owner then starts a fresh worker for the next job.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Optional

# A worker that is not ready this long after it was started (importing torch, loading the plugins)
# counts as one that could not start.
STARTUP_LIMIT_S = 600.0

# What comes back from one try of a job.
ANSWERED = "answered"  # the job ran and answered (ok or failed: its JobResult says which)
DIED = "died"  # the worker died while running the job (signal or exit code in the reason)
TIMED_OUT = "timed_out"  # the job passed its time limit and did not stop: killed with its worker
NOT_STARTED = "not_started"  # the worker could not start (a plugin that fails to load, ...)


def kill_grace(timeout: float) -> float:
    """Seconds past the time limit left to a job to stop by itself (the job runner's own limit
    raises in Python code at ``timeout``) before its worker is killed."""
    return max(5.0, 0.1 * timeout)


def kill_after(timeout: Optional[float]) -> Optional[float]:
    """Seconds after a job is handed to its worker at which the worker is killed (None: never)."""
    if not timeout or timeout <= 0:
        return None
    return timeout + kill_grace(timeout)


def describe_exit(returncode: Optional[int]) -> str:
    """A worker's end in words: the signal that killed it (name and number) or its exit code."""
    if returncode is None:
        return "did not exit"
    if returncode < 0:
        number = -returncode
        try:
            name = signal.Signals(number).name
        except ValueError:
            name = "signal"
        text = f"killed by {name} ({number})"
        if number == signal.SIGKILL:
            text += ", e.g. by the out-of-memory killer"
        return text
    return f"exited with code {returncode}"


@dataclass
class Attempt:
    """One try of a job in an isolated worker, as the coordinator receives it.

    ``files`` carries files for the run directory (relative path -> bytes) from a worker that does not
    share it with the coordinator (see :mod:`harness.executors.transfer`); empty when it does.
    """

    outcome: str
    result: Optional[bytes] = None  # the pickled JobResult, when ANSWERED
    reason: str = ""  # why not, otherwise
    seconds: float = 0.0
    files: dict = field(default_factory=dict)


class IsolatedWorker:
    """One child process running jobs; its owner hands it jobs and watches it (see the module doc).

    ``setup_blob``: the pickled WorkerSetup; ``threads``: torch threads for the child; ``sys_path``:
    import paths the child adds after its own (plugins added at run time from a path the coordinator
    has); ``env``: the child's environment (default: this process's).
    """

    def __init__(self, setup_blob: bytes, threads: int, sys_path=(), env: Optional[dict] = None):
        parent_end, child_end = multiprocessing.Pipe()
        cmd = [sys.executable, "-m", "harness.executors.child", str(child_end.fileno()), str(os.getpid())]
        try:
            self.proc = subprocess.Popen(cmd, pass_fds=(child_end.fileno(),), stdin=subprocess.DEVNULL,
                                         stdout=sys.__stderr__ if _has_fileno(sys.__stderr__) else None,
                                         env=env)
        finally:
            child_end.close()
        self.conn = parent_end
        self.ready = False
        self.dead = False
        self.started = time.monotonic()  # when it was started, then when its current job was handed over
        self.job = None  # what the owner handed it (opaque here)
        self.limit: Optional[float] = None  # seconds from ``started`` at which it is killed
        self.timeout: Optional[float] = None
        self.startup_seconds: Optional[float] = None  # from start to ready
        self.answered = 0  # jobs it answered
        self._send((list(sys_path), int(threads), setup_blob))

    # ------------------------------------------------------------------ owner's side
    @property
    def busy(self) -> bool:
        return self.job is not None

    def assign(self, job, job_blob: bytes, timeout: Optional[float]) -> None:
        """Hand over one job (the worker must be ready and idle)."""
        self.job = job
        self.started = time.monotonic()
        self.limit = kill_after(timeout)
        self.timeout = timeout
        self._send(job_blob)

    def overdue(self, now: float) -> bool:
        """Past its startup limit, or its job past the time limit plus grace."""
        if self.dead:
            return False
        if not self.ready:
            return now - self.started > STARTUP_LIMIT_S
        return self.busy and self.limit is not None and now - self.started > self.limit

    def seconds_left(self, now: float) -> Optional[float]:
        if self.dead:
            return None
        if not self.ready:
            return STARTUP_LIMIT_S - (now - self.started)
        if self.busy and self.limit is not None:
            return self.limit - (now - self.started)
        return None

    def receive(self) -> Optional[Attempt]:
        """Read what the worker sent (call when its connection is readable). Returns the job's
        Attempt when it answered or died, None when it only said it is ready."""
        try:
            message = self.conn.recv()
        except (EOFError, OSError):
            return self._died()
        kind = message[0]
        if kind == "ready":
            self.ready = True
            self.startup_seconds = time.monotonic() - self.started
            return None
        if kind == "error":
            self.kill()
            return Attempt(NOT_STARTED, reason=f"worker process could not start: {message[1]}")
        return self._answered(message[1])

    def check_alive(self) -> Optional[Attempt]:
        """An Attempt if the process has ended (even when something else still holds its pipe open)."""
        if self.dead or self.proc.poll() is None:
            return None
        if self.conn.poll():  # it answered, then exited: take the answer
            return self.receive()
        return self._died()

    def expire(self) -> Attempt:
        """Kill an overdue worker and say why."""
        seconds = time.monotonic() - self.started
        self.kill()
        if not self.ready:
            return Attempt(NOT_STARTED, reason=f"worker process could not start: not ready after "
                                               f"{STARTUP_LIMIT_S:g} s", seconds=seconds)
        grace = kill_grace(self.timeout)
        return Attempt(TIMED_OUT, reason=f"timed out after {self.timeout:g} s and did not stop within {grace:g} s "
                                         "more (a hang in native code?): killed with its worker process",
                       seconds=seconds)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self._close()

    def close(self) -> None:
        """Ask an idle worker to exit; kill it if it does not (or is busy)."""
        if self.dead:
            return
        if not self.busy:
            try:
                self.conn.send(None)
                self.proc.wait(timeout=5)
            except (OSError, subprocess.TimeoutExpired):
                pass
        self.kill()

    # ------------------------------------------------------------------ blocking use (one job)
    def run(self, job_blob: bytes, timeout: Optional[float]) -> Attempt:
        """Run one job and wait for its Attempt (used where the owner has nothing else to watch)."""
        while not self.ready:
            attempt = self._wait()
            if attempt is not None:
                return attempt
        self.assign(True, job_blob, timeout)
        while True:
            attempt = self._wait()
            if attempt is not None:
                return attempt

    def _wait(self) -> Optional[Attempt]:
        left = self.seconds_left(time.monotonic())
        wait_for = 1.0 if left is None else max(0.0, min(1.0, left))
        if multiprocessing.connection.wait([self.conn], timeout=wait_for):
            return self.receive()
        if self.overdue(time.monotonic()):
            return self.expire()
        return self.check_alive()

    # ------------------------------------------------------------------ internals
    def _send(self, message) -> None:
        try:
            self.conn.send(message)
        except OSError:  # it died already: the next receive reads the end of the pipe and says how
            pass

    def _answered(self, blob: bytes) -> Attempt:
        seconds = time.monotonic() - self.started
        self.job = None
        self.answered += 1
        return Attempt(ANSWERED, result=blob, seconds=seconds)

    def _died(self) -> Attempt:
        seconds = time.monotonic() - self.started
        try:
            code = self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:  # the pipe broke but the process lives on: end it
            self.proc.kill()
            code = self.proc.wait()
        was_ready = self.ready
        self._close()
        if not was_ready:
            return Attempt(NOT_STARTED, reason=f"worker process could not start: it {describe_exit(code)}",
                           seconds=seconds)
        return Attempt(DIED, reason=f"worker process died: {describe_exit(code)}", seconds=seconds)

    def _close(self) -> None:
        self.dead = True
        self.job = None
        self.conn.close()


def _has_fileno(stream) -> bool:
    try:
        stream.fileno()
        return True
    except (AttributeError, OSError, ValueError):
        return False
