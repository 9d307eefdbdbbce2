"""``--executor process`` (the default): isolated worker processes on this machine.

Each worker (:class:`~harness.executors.isolation.IsolatedWorker`) builds its JobRunner from the
parent's :class:`~harness.worker.WorkerSetup` once, so it sees exactly the parent's plugins (those added
at run time included) and keeps its datasets, feature extractors and caches from job to job; it runs
whole jobs, one at a time. There are as many workers as usable cores (:mod:`harness.executors.cores`)
unless ``--jobs N`` says otherwise, never more than there are jobs, and each gets its share of the cores
as torch threads: one thread each while several run (two threads on one core only contend), every
core for a lone worker, never more than the coordinator's own thread count (``OMP_NUM_THREADS``).

On ``--device cuda`` each job holds a share of the GPU (:mod:`harness.executors.resources`:
``--gpus-per-job``, else the model's declaration, else the whole GPU), and a job starts only when its
share fits beside the shares of the jobs running: by default one job at a time has the GPU, so a speed
figure is never measured while another job's kernels share the device.

A job past its time limit is killed with its worker, a worker that dies takes only its own job down
(the reason names the signal or exit code), and the next job gets a fresh worker. Results are yielded
as each job ends; the coordinator stores them. Each result's ``details["phases"]`` gains what the job
cost outside its own process: ``worker_start`` (the worker's start-up: Python, torch, the plugins; on
the first job a worker runs) and ``dispatch`` (handing the job over and its result back).
"""

from __future__ import annotations

import math
import multiprocessing.connection
import pickle
import time
from collections import deque
from typing import Callable, Iterator, Optional

from harness.contracts import UserError
from harness.executors.cores import usable_cores
from harness.executors.isolation import ANSWERED, NOT_STARTED, IsolatedWorker
from harness.executors.outcome import job_result, should_retry
from harness.executors.resources import check_flags, request_for
from harness.jobs import JobResult, JobStatus

GPU_CAPACITY = 1.0  # a run's device is one GPU
_EPS = 1e-9


class ProcessPool:
    """``workers`` isolated worker processes (default: one per usable core); ``retries``: more attempts
    for a job whose worker died; ``gpus_per_job``: every job's GPU share on ``--device cuda``."""

    name = "process"
    in_process = False

    def __init__(self, workers: Optional[int] = None, retries: int = 0, gpus_per_job: Optional[float] = None):
        check_flags(None, gpus_per_job)
        self.workers = max(1, int(workers or usable_cores()))
        self.retries = max(0, int(retries))
        self.gpus_per_job = gpus_per_job
        self._pool: list = []
        self._watch: Optional[Callable] = None
        self._running: list = []  # (job, GPU share) in the order they started

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """End every worker (a running job is abandoned; its result is never stored)."""
        pool, self._pool = self._pool, []
        for worker in pool:
            worker.close()

    def watch(self, callback: Callable) -> None:
        """Call ``callback(running jobs)`` whenever a job starts or ends."""
        self._watch = callback

    def resume_flags(self) -> list:
        flags = ["--executor", self.name, "--jobs", str(self.workers)]
        flags += ["--retries", str(self.retries)] if self.retries else []
        return flags + (["--gpus-per-job", f"{self.gpus_per_job:g}"] if self.gpus_per_job is not None else [])

    def results(self, job_runner, jobs) -> Iterator:
        queue = deque()  # (job, its attempts so far, its GPU share)
        for job in jobs:
            try:
                queue.append((job, [], self._share(job_runner, job)))
            except UserError as exc:
                yield job, JobResult(JobStatus.FAILED, str(exc))
        if not queue:
            return
        setup_blob = pickle.dumps(job_runner.setup)
        size = pool_size(self.workers, [share for _, _, share in queue])
        threads = threads_per_worker(size)
        timeout = job_runner.job_timeout
        broken = None  # the attempt of a worker that could not start: every later one would fail alike
        try:
            while queue or self._busy():
                self._pool = [w for w in self._pool if not w.dead]
                if broken is not None:
                    while queue:
                        job, attempts, _ = queue.popleft()
                        yield job, job_result(attempts + [broken])
                else:
                    while len(self._pool) < min(size, len(queue) + self._busy()):
                        self._pool.append(IsolatedWorker(setup_blob, threads))
                    self._assign(queue, timeout)
                if not self._pool:
                    break
                for worker, held, attempt in self._events():
                    if attempt.outcome == NOT_STARTED:
                        broken = attempt
                    if held is None:
                        continue  # an idle worker died: the next job gets a fresh one
                    self._ended(held)
                    job, attempts, share = held
                    attempts = attempts + [attempt]
                    if should_retry(attempts, self.retries):
                        queue.appendleft((job, attempts, share))
                    else:
                        yield job, _with_costs(job_result(attempts), worker, attempt)
        finally:
            self._running = []
            self.close()

    # ------------------------------------------------------------------ scheduling
    def _share(self, job_runner, job) -> float:
        """The job's share of the GPU (0 off CUDA); a share above the whole GPU holds the whole GPU."""
        if job_runner.device.type != "cuda":
            return 0.0
        request = request_for(job_runner.host.model(job.model), job_runner.profile.name, str(job_runner.device),
                              None, self.gpus_per_job)
        return min(request.gpus, GPU_CAPACITY)

    def _assign(self, queue: deque, timeout: Optional[float]) -> None:
        """Hand each idle ready worker the first queued job whose GPU share fits beside the running ones."""
        for worker in self._pool:
            if not (worker.ready and not worker.busy and queue):
                continue
            used = sum(share for _, share in self._running)
            pick = next((i for i, (_, _, share) in enumerate(queue) if used + share <= GPU_CAPACITY + _EPS), None)
            if pick is None:
                return
            held = queue[pick]
            del queue[pick]
            worker.assign(held, pickle.dumps(held[0]), timeout)
            self._running.append((held[0], held[2]))
            self._notify()

    def _ended(self, held) -> None:
        self._running = [(job, share) for job, share in self._running if job is not held[0]]
        self._notify()

    def _notify(self) -> None:
        if self._watch is not None:
            self._watch([job for job, _ in self._running])

    def _busy(self) -> int:
        return sum(1 for w in self._pool if w.busy)

    def _events(self) -> list:
        """Wait (at most until the next deadline, and a second) for the workers; return (worker, the job
        it held or None, Attempt) for each one that answered, died or was killed."""
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
                events.append((worker, held, attempt))
        return events


def pool_size(workers: int, shares: list) -> int:
    """Workers worth starting: at most ``workers`` and the number of jobs, and on a GPU no more than the
    smallest share lets run at once (more would only wait, each holding a CUDA context)."""
    size = min(workers, len(shares))
    gpu = [share for share in shares if share > 0]
    if gpu:
        size = min(size, max(1, math.floor(GPU_CAPACITY / min(gpu) + _EPS)))
    return max(1, size)


def threads_per_worker(size: int) -> int:
    """torch threads for each of ``size`` workers: the usable cores shared out, at least one, at most the
    coordinator's own thread count (which honours ``OMP_NUM_THREADS``)."""
    import torch

    return max(1, min(torch.get_num_threads(), usable_cores() // size))


def _with_costs(result: JobResult, worker: IsolatedWorker, attempt) -> JobResult:
    """The result with what it cost outside the job's own process (see the module doc)."""
    if attempt.outcome != ANSWERED:
        return result
    phases = result.details.setdefault("phases", {})
    phases["dispatch"] = round(max(0.0, attempt.seconds - result.seconds), 4)
    if worker.answered == 1 and worker.startup_seconds is not None:
        phases["worker_start"] = round(worker.startup_seconds, 4)
    return result
