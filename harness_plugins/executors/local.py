"""The ``local`` executor: jobs one after another in the coordinator's process (for debugging)."""

from harness import hookimpl
from harness.executors import ExecutorSpec, InProcess


@hookimpl
def harness_register_executors(register):
    register(ExecutorSpec(
        "local", lambda options: InProcess(),
        description="one job after another in this process, with the process's torch threads (for debugging: "
                    "breakpoints and tracebacks where the job runs); the time limit stops Python code only and a "
                    "crash of a plugin is a crash of the run"))
