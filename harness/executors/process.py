"""``--executor process --jobs N``: N isolated worker processes on this machine.

Each worker (:class:`~harness.executors.isolation.IsolatedWorker`) builds its JobRunner from the
parent's :class:`~harness.worker.WorkerSetup`, so it sees exactly the parent's plugins (those added at
run time included), and runs whole jobs, one at a time, with ``cores // N`` torch threads. A job past
its time limit is killed with its worker, a worker that dies takes only its own job down (the reason
names the signal or exit code), and the next job gets a fresh worker. Results are yielded as each job
ends; the coordinator stores them.
"""

from __future__ import annotations

import multiprocessing.connection
import os
import pickle
import time
from collections import deque
from typing import Iterator, Optional

from harness.executors.isolation import NOT_STARTED, IsolatedWorker
from harness.executors.outcome import job_result, should_retry


class ProcessPool:
    """``workers`` isolated worker processes (default: one per core); ``retries``: more attempts for a
    job whose worker died."""

    name = "process"
    in_process = False

    def __init__(self, workers: Optional[int] = None, retries: int = 0):
        self.workers = max(1, int(workers or os.cpu_count() or 1))
        self.retries = max(0, int(retries))
        self._pool: list = []

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """End every worker (a running job is abandoned; its result is never stored)."""
        pool, self._pool = self._pool, []
        for worker in pool:
            worker.close()

    def resume_flags(self) -> list:
        flags = ["--executor", self.name, "--jobs", str(self.workers)]
        return flags + (["--retries", str(self.retries)] if self.retries else [])

    def results(self, job_runner, jobs) -> Iterator:
        queue = deque((job, []) for job in jobs)  # (job, its attempts so far)
        if not queue:
            return
        setup_blob = pickle.dumps(job_runner.setup)
        threads = max(1, (os.cpu_count() or 1) // self.workers)
        size = min(self.workers, len(queue))
        timeout = job_runner.job_timeout
        broken = None  # the attempt of a worker that could not start: every later one would fail alike
        try:
            while queue or self._busy():
                self._pool = [w for w in self._pool if not w.dead]
                if broken is not None:
                    while queue:
                        job, attempts = queue.popleft()
                        yield job, job_result(attempts + [broken])
                else:
                    while len(self._pool) < min(size, len(queue) + self._busy()):
                        self._pool.append(IsolatedWorker(setup_blob, threads))
                    for worker in self._pool:
                        if worker.ready and not worker.busy and queue:
                            job, attempts = queue.popleft()
                            worker.assign((job, attempts), pickle.dumps(job), timeout)
                if not self._pool:
                    break
                for held, attempt in self._events():
                    if attempt.outcome == NOT_STARTED:
                        broken = attempt
                        continue
                    if held is None:
                        continue  # an idle worker died: the next job gets a fresh one
                    job, attempts = held
                    attempts = attempts + [attempt]
                    if should_retry(attempts, self.retries):
                        queue.appendleft((job, attempts))
                    else:
                        yield job, job_result(attempts)
        finally:
            self.close()

    def _busy(self) -> int:
        return sum(1 for w in self._pool if w.busy)

    def _events(self) -> list:
        """Wait (at most until the next deadline, and a second) for the workers; return
        (the job a worker held or None, Attempt) for each one that answered, died or was killed."""
        now = time.monotonic()
        lefts = [left for w in self._pool if (left := w.seconds_left(now)) is not None]
        wait_for = max(0.0, min([1.0, *lefts]))
        readable = multiprocessing.connection.wait([w.conn for w in self._pool], timeout=wait_for)
        events = []
        for worker in self._pool:
            held = worker.job
            if worker.conn in readable:
                attempt = worker.receive()
            elif worker.overdue(time.monotonic()):
                attempt = worker.expire()
            else:
                attempt = worker.check_alive()
            if attempt is not None:
                events.append((held, attempt))
        return events
