"""The ``process`` executor: isolated worker processes on this machine (``--jobs N``, ``--retries N``)."""

from harness import hookimpl
from harness.executors import ExecutorSpec, ProcessPool


@hookimpl
def harness_register_executors(register):
    register(ExecutorSpec(
        "process", lambda options: ProcessPool(options.jobs, options.retries),
        description="isolated worker processes on this machine (default: one per core); a job past its time "
                    "limit is killed with its worker and a crash fails only its job",
        accepts=frozenset({"jobs", "retries"})))
