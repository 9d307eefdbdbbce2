"""Where a job's time goes: wall and CPU seconds of each phase, recorded in the job's details.

The job runner times its own phases (``dataset``: loading the data, free after a worker's first job on
it; ``build``; ``fit`` or ``load``; ``metrics``: every metric, sampling variants included; ``save``: the
artifact). Metrics add the steps they share by name through :meth:`harness.contracts.MetricContext.timed`
(``samples``: the job's one sample draw; reference features ...), which lie inside ``metrics``; each
metric's own seconds are in ``metric_seconds``. An isolated worker's executor adds what the job cost
outside it (``worker_start``, ``dispatch``: :mod:`harness.executors.process`).

``phases`` holds wall seconds; ``phases_cpu`` the CPU seconds of the job runner's phases (every thread
of the process: on a machine shared with other work, CPU time is the figure that does not grow with
the load).
"""

from __future__ import annotations

import time
from contextlib import contextmanager


class Phases:
    """The phases of one job (see the module doc); ``shared`` is the dict metrics add their steps to."""

    def __init__(self):
        self.wall: dict = {}
        self.cpu: dict = {}
        self.shared: dict = {}

    @contextmanager
    def __call__(self, name: str):
        wall, cpu = time.perf_counter(), time.process_time()
        try:
            yield
        finally:
            self.wall[name] = round(self.wall.get(name, 0.0) + time.perf_counter() - wall, 4)
            self.cpu[name] = round(self.cpu.get(name, 0.0) + time.process_time() - cpu, 4)

    def details(self) -> dict:
        """``{"phases": {phase: wall seconds}, "phases_cpu": {phase: CPU seconds}}``."""
        return {"phases": {**self.wall, **self.shared}, "phases_cpu": dict(self.cpu)}
