"""The Ray task of one job; it runs in a Ray worker process on a cluster node.

The task does not run the job itself: it hands it to an isolated worker
(:class:`~harness.executors.isolation.IsolatedWorker`), a child process of the Ray worker, and waits.
So the time limit is enforced from outside the job (a hang in native code is killed with the child),
a crash is reported with its signal or exit code, and the Ray worker itself survives either. Each Ray
worker keeps its child for the next job of the same run (building a JobRunner imports torch and every
plugin); a child that died or was killed is replaced, and so is one that sees other GPUs than the
task was given (``CUDA_VISIBLE_DEVICES``, set by Ray per task).

What comes back is an :class:`~harness.executors.isolation.Attempt`: the pickled JobResult (never
unpickled here: this process need not import the plugins) and, when this node does not share the run
directory with the coordinator, the files the job wrote there (:mod:`harness.executors.transfer`).
"""

from __future__ import annotations

import atexit
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from harness.executors import transfer
from harness.executors.isolation import Attempt, IsolatedWorker


@dataclass
class TaskContext:
    """What every job of a run shares (put into Ray's object store once)."""

    setup_blob: bytes  # the pickled WorkerSetup
    sys_path: list  # the coordinator's import paths, added after the node's own
    env: dict  # the coordinator's HARNESS_* variables
    timeout: Optional[float]  # the job time limit
    run_dir: str  # the coordinator's run directory ("" when there is none to share)
    token: str  # see harness.executors.transfer

    @property
    def digest(self) -> str:
        parts = [self.setup_blob, repr((self.sys_path, sorted(self.env.items()))).encode()]
        return hashlib.sha256(b"\0".join(parts)).hexdigest()


_worker: Optional[IsolatedWorker] = None
_worker_key: Optional[tuple] = None


def run_job(context: TaskContext, job_blob: bytes, job_dirs: list, threads: int) -> Attempt:
    """Run one job (pickled) in this node's isolated worker; ``job_dirs``: the directories it writes into
    (:func:`harness.executors.transfer.job_dirs`), collected when this node does not share the run directory."""
    worker = _worker_for(context, threads)
    attempt = worker.run(job_blob, context.timeout)
    if context.run_dir and not transfer.shares(Path(context.run_dir), context.token):
        attempt.files = transfer.collect(Path(context.run_dir), job_dirs)
    return attempt


def _worker_for(context: TaskContext, threads: int) -> IsolatedWorker:
    global _worker, _worker_key
    key = (context.digest, threads, os.environ.get("CUDA_VISIBLE_DEVICES"))
    if _worker is not None and (_worker.dead or _worker_key != key):
        _worker.close()
        _worker = None
    if _worker is None:
        _worker = IsolatedWorker(context.setup_blob, threads, context.sys_path, env={**os.environ, **context.env})
        _worker_key = key
    return _worker


@atexit.register
def _close() -> None:
    if _worker is not None:
        _worker.close()
