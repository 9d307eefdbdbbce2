"""Executors: where jobs run. They change where a job runs, never what it computes: every executor
calls :meth:`harness.worker.JobRunner.run` on the same job description, and the coordinator alone
writes the store.

- ``local`` (:class:`InProcess`, the default): jobs one after another in this process.
- ``process`` (:class:`ProcessPool`, ``--jobs N``): N isolated worker processes on this machine.
- ``ray`` (:class:`~harness.executors.ray_cluster.RayExecutor`, ``--ray-address``): each job a Ray
  task on a local or existing Ray cluster (``pip install 'harness[ray]'``; Ray is imported only here).

Under ``process`` and ``ray`` each job runs in a worker process the executor can kill
(:mod:`harness.executors.isolation`): a job past its time limit is killed with its worker, a worker
that dies fails only its job (signal or exit code in the reason), ``--retries N`` retries a job whose
worker died. An executor is a context manager: entering it connects (Ray) so that a bad address is a
usage error before anything is written; closing it ends its workers and cancels what is outstanding.

Executors know jobs, results and the job runner, never the runner that plans and stores.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from harness.contracts import UserError
from harness.executors.local import InProcess
from harness.executors.process import ProcessPool

EXECUTORS = ("local", "process", "ray")

__all__ = ["EXECUTORS", "ExecutorOptions", "InProcess", "ProcessPool", "make_executor"]


@dataclass
class ExecutorOptions:
    """What the command line says about where jobs run."""

    name: str = "local"
    jobs: Optional[int] = None  # parallelism: process workers; ray: tasks in flight at most
    retries: int = 0
    ray_address: Optional[str] = None
    cpus_per_job: Optional[float] = None
    gpus_per_job: Optional[float] = None
    run_dir: Optional[Path] = None  # where results and artifacts land (the coordinator's --out)


def make_executor(options: ExecutorOptions):
    """The executor the options name; a UserError for options that do not fit it."""
    name = options.name
    if name not in EXECUTORS:
        raise UserError(f"unknown executor {name!r}; choose one of {', '.join(EXECUTORS)}")
    if options.jobs is not None and options.jobs < 1:
        raise UserError("--jobs must be at least 1")
    if options.retries < 0:
        raise UserError("--retries must be 0 or more")
    ray_only = [flag for flag, value in (("--ray-address", options.ray_address),
                                         ("--cpus-per-job", options.cpus_per_job),
                                         ("--gpus-per-job", options.gpus_per_job)) if value is not None]
    if name != "ray" and ray_only:
        raise UserError(f"{', '.join(ray_only)} only applies to --executor ray")
    if name == "local":
        if options.jobs not in (None, 1):
            raise UserError(f"--executor local runs one job at a time; for --jobs {options.jobs} use "
                            f"--executor process (this machine) or --executor ray")
        if options.retries:
            raise UserError("--retries needs --executor process or ray: in this process a worker that dies "
                            "is the run itself")
        return InProcess()
    if name == "process":
        return ProcessPool(options.jobs, options.retries)
    from harness.executors.ray_cluster import RayExecutor

    return RayExecutor(address=options.ray_address, jobs=options.jobs, retries=options.retries,
                       cpus_per_job=options.cpus_per_job, gpus_per_job=options.gpus_per_job,
                       run_dir=options.run_dir)
