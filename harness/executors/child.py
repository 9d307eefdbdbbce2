"""The process of an isolated worker: ``python -m harness.executors.child FD PARENT_PID``.

Started by :class:`harness.executors.isolation.IsolatedWorker`; talks to it over the connection ``FD``:

1. receives ``(import paths, torch threads, pickled WorkerSetup)``, builds the JobRunner (the parent's
   plugins) and answers ``("ready",)``, or ``("error", reason)`` if it cannot;
2. then, for each pickled Job it receives, runs it and answers ``("result", pickled JobResult)``;
3. exits when it receives ``None`` or its parent goes away.

It ignores Ctrl-C (its owner decides when it ends) and, on Linux, dies with its parent.
"""

from __future__ import annotations

import os
import pickle
import signal
import sys
from multiprocessing.connection import Connection


def main(argv: list) -> int:
    fd, parent = int(argv[0]), int(argv[1])
    _die_with_parent(parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    conn = Connection(fd)
    try:
        sys_path, threads, setup_blob = conn.recv()
    except EOFError:
        return 0
    sys.path.extend(p for p in sys_path if p not in sys.path)
    try:
        import torch

        torch.set_num_threads(max(1, threads))
        runner = pickle.loads(setup_blob).build()
        runner.host.registry  # load every plugin now: a plugin that fails does so before any job
    except Exception as exc:
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
        return 1
    conn.send(("ready",))
    while True:
        try:
            message = conn.recv()
        except EOFError:
            return 0
        if message is None:
            return 0
        conn.send(("result", _answer(runner, message)))


def _answer(runner, job_blob: bytes) -> bytes:
    from harness.jobs import JobResult, JobStatus

    try:
        job = pickle.loads(job_blob)
    except Exception as exc:
        reason = f"the worker could not read the job: {type(exc).__name__}: {exc}"
        return pickle.dumps(JobResult(JobStatus.FAILED, reason))
    result = runner.run(job)
    try:
        return pickle.dumps(result)
    except Exception as exc:  # e.g. a plugin put something unpicklable into details
        failed = JobResult(JobStatus.FAILED, f"the job's result could not be sent back: {type(exc).__name__}: {exc}",
                           seconds=result.seconds)
        return pickle.dumps(failed)


def _die_with_parent(parent: int) -> None:
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent:  # the parent is already gone
        os._exit(1)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
