"""The ``ray`` executor: each job a Ray task on a local or existing Ray cluster. Ray itself is imported
only when a run uses it (``pip install 'harness[ray]'``)."""

from harness import hookimpl
from harness.executors import ExecutorSpec


def _ray_executor(options):
    from harness.executors.ray_cluster import RayExecutor

    return RayExecutor(address=options.address, jobs=options.jobs, retries=options.retries,
                       cpus_per_job=options.cpus_per_job, gpus_per_job=options.gpus_per_job,
                       run_dir=options.run_dir, resources=options.resources)


@hookimpl
def harness_register_executors(register):
    register(ExecutorSpec(
        "ray", _ray_executor,
        description="a Ray task per job on a local or existing Ray cluster (--ray-address), each asking for "
                    "its job's CPUs, GPUs and --resources; isolated like process; each node calibrated",
        accepts=frozenset({"jobs", "retries", "address", "cpus_per_job", "gpus_per_job", "resources"})))
