"""``--executor local`` (the default): jobs one after another in this process.

The time limit is the job runner's own (SIGALRM), which stops Python code but cannot interrupt a hang
in native code, and a crash of a plugin is a crash of the run; the process and Ray executors isolate
each job in a worker process that can be killed instead.
"""

from __future__ import annotations

from typing import Iterator


class InProcess:
    """Runs each job with the coordinator's own job runner, in the coordinator's process."""

    name = "local"
    in_process = True
    workers = 1

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        pass

    def results(self, job_runner, jobs) -> Iterator:
        for job in jobs:
            yield job, job_runner.run(job)

    def resume_flags(self) -> list:
        return []
