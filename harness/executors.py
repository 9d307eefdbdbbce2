"""Executors: where jobs run. They change where a job runs, never what it computes: every executor
calls the same ``Runner.run_job`` on the same job description.

- ``InProcess`` (default): jobs one after another in this process.
- ``ProcessPool``: a local pool of worker processes (``run --jobs N``). Each worker rebuilds the
  plugin host from the installed entry points (and ``HARNESS_PLUGINS``) and runs whole jobs; the parent
  alone writes the store, as each result arrives.
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import os
from typing import Iterator


class InProcess:
    name = "in-process"

    def results(self, runner, jobs) -> Iterator:
        for job in jobs:
            yield job, runner.run_job(job)


def _worker_init(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def _run_in_worker(config: dict, job):
    from harness.plugins import get_harness
    from harness.profiles import get_profile
    from harness.runner import Runner

    global _RUNNER
    if _RUNNER is None or _RUNNER[0] != config:
        runner = Runner(get_harness(), get_profile(config["profile"]), config["out"], config["seeds"],
                        device=config["device"], data_root=config["data_root"], cache_dir=config["cache_dir"],
                        metrics=config["metrics"], job_timeout=config["job_timeout"])
        _RUNNER = (config, runner)
    return _RUNNER[1].run_job(job)


_RUNNER = None


class ProcessPool:
    name = "process-pool"

    def __init__(self, workers: int):
        self.workers = max(1, int(workers))

    def results(self, runner, jobs) -> Iterator:
        config = {"profile": runner.profile.name, "out": str(runner.out), "seeds": runner.seeds,
                  "device": str(runner.device), "data_root": str(runner.data_root),
                  "cache_dir": str(runner.cache_dir), "metrics": runner.metric_names,
                  "job_timeout": runner.job_timeout}
        threads = max(1, (os.cpu_count() or 1) // self.workers)
        ctx = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(self.workers, mp_context=ctx, initializer=_worker_init,
                                                    initargs=(threads,)) as pool:
            futures = {pool.submit(_run_in_worker, config, job): job for job in jobs}
            for future in concurrent.futures.as_completed(futures):
                job = futures[future]
                try:
                    result = future.result()
                except Exception as exc:  # a worker that died takes only its own job down
                    from harness.runner import FAILED, JobResult

                    result = JobResult(FAILED, f"worker process failed: {type(exc).__name__}: {exc}")
                yield job, result


def get_executor(jobs: int):
    return ProcessPool(jobs) if jobs and jobs > 1 else InProcess()
