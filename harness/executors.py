"""Executors: where jobs run. They change where a job runs, never what it computes: every executor
calls :meth:`harness.worker.JobRunner.run` on the same job description, and the coordinator alone
writes the store.

- ``InProcess`` (``--executor local``, the default): jobs one after another in this process.
- ``ProcessPool`` (``--executor process --jobs N``): a local pool of worker processes. Each worker
  builds its :class:`~harness.worker.JobRunner` from the parent's :class:`~harness.worker.WorkerSetup`,
  so it sees exactly the parent's plugins (those added at run time included) and runs whole jobs.

Executors know jobs, results and the job runner, never the runner that plans and stores.
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import os
from typing import Iterator

from harness.jobs import FAILED, JobResult


class InProcess:
    name = "local"

    def results(self, job_runner, jobs) -> Iterator:
        for job in jobs:
            yield job, job_runner.run(job)


_WORKER = None  # this worker process's JobRunner


def _worker_init(threads: int, setup) -> None:
    import torch

    global _WORKER
    torch.set_num_threads(threads)
    _WORKER = setup.build()


def _run_in_worker(job):
    return _WORKER.run(job)


class ProcessPool:
    name = "process"

    def __init__(self, workers: int):
        self.workers = max(1, int(workers))

    def results(self, job_runner, jobs) -> Iterator:
        threads = max(1, (os.cpu_count() or 1) // self.workers)
        ctx = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(self.workers, mp_context=ctx, initializer=_worker_init,
                                                    initargs=(threads, job_runner.setup)) as pool:
            futures = {pool.submit(_run_in_worker, job): job for job in jobs}
            for future in concurrent.futures.as_completed(futures):
                job = futures[future]
                try:
                    result = future.result()
                except Exception as exc:  # a worker that died takes only its own job down
                    result = JobResult(FAILED, f"worker process failed: {type(exc).__name__}: {exc}")
                yield job, result


def get_executor(jobs: int):
    return ProcessPool(jobs) if jobs and jobs > 1 else InProcess()
