"""Executors: where jobs run. They change where a job runs, never what it computes: every executor
calls :meth:`harness.worker.JobRunner.run` on the same job description, and the coordinator alone
writes the store.

Executors are registered through ``harness_register_executors`` (:class:`ExecutorSpec`, the contract in
:mod:`harness.executors.spec`), the built-in ones exactly as a third-party one is. The core offers
the building blocks they are made of:

- :class:`ProcessPool` (``process``, the default; ``--jobs N``): N isolated worker processes on this
  machine, by default one per usable core (:mod:`~harness.executors.cores`);
- :class:`InProcess` (registered as ``local``): jobs one after another in this process, for debugging;
- :class:`~harness.executors.ray_cluster.RayExecutor` (``ray``, ``--ray-address``): each job a Ray task
  on a local or existing Ray cluster (``pip install 'harness[ray]'``; Ray is imported only when it runs);
- :class:`~harness.executors.isolation.IsolatedWorker`: one job at a time in a child process its owner
  can kill (a job past its time limit is killed with its worker, a worker that dies fails only its
  job, signal or exit code in the reason); :mod:`~harness.executors.outcome` turns its attempts into
  a result and decides retries (``--retries N``).

Executors know jobs, results and the job runner, never the runner that plans and stores.
"""

from __future__ import annotations

from harness.executors.local import InProcess
from harness.executors.process import ProcessPool
from harness.executors.spec import OPTIONS, ExecutorOptions, ExecutorSpec, make_executor

__all__ = ["OPTIONS", "ExecutorOptions", "ExecutorSpec", "InProcess", "ProcessPool", "make_executor"]
