"""The ``local`` executor: jobs one after another in the coordinator's process (the default)."""

from harness import hookimpl
from harness.executors import ExecutorSpec, InProcess


@hookimpl
def harness_register_executors(register):
    register(ExecutorSpec(
        "local", lambda options: InProcess(),
        description="one job after another in this process (default); the time limit stops Python code only "
                    "and a crash of a plugin is a crash of the run"))
