"""``--executor local``: jobs one after another in this process (for debugging).

The time limit is the job runner's own (SIGALRM), which stops Python code but cannot interrupt a hang
in native code, and a crash of a plugin is a crash of the run; the process executor (the default) and
the Ray executor isolate each job in a worker process that can be killed instead.
"""

from __future__ import annotations

from typing import Callable, Iterator, Optional


class InProcess:
    """Runs each job with the coordinator's own job runner, in the coordinator's process."""

    name = "local"
    in_process = True
    workers = 1

    def __init__(self):
        self._watch: Optional[Callable] = None

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        pass

    def watch(self, callback: Callable) -> None:
        """Call ``callback(running jobs)`` as each job starts and ends."""
        self._watch = callback

    def results(self, job_runner, jobs) -> Iterator:
        for job in jobs:
            if self._watch is not None:
                self._watch([job])
            result = job_runner.run(job)
            if self._watch is not None:
                self._watch([])
            yield job, result

    def resume_flags(self) -> list:
        return ["--executor", self.name]
