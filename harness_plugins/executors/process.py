"""The ``process`` executor, the default: isolated worker processes on this machine (``--jobs N``,
``--retries N``, ``--gpus-per-job X``)."""

from harness import hookimpl
from harness.executors import ExecutorSpec, ProcessPool


@hookimpl
def harness_register_executors(register):
    register(ExecutorSpec(
        "process", lambda options: ProcessPool(options.jobs, options.retries, options.gpus_per_job),
        description="isolated worker processes on this machine (the default): one per usable core, one torch thread "
                    "each while several run; on --device cuda as many at once as the jobs' GPU shares fit on the GPU; "
                    "a job past its time limit is killed with its worker and a crash fails only its job",
        accepts=frozenset({"jobs", "retries", "gpus_per_job"}), default=True))
