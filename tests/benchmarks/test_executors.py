"""The executors' own cost per job: a model that does nothing, on a tiny dataset, with a metric that
measures nothing, run as JOBS jobs one after another in this process (``local``) and in isolated
worker processes (``process``, the default), back to back.

``test_executor_overhead_per_job[local|process]`` times each executor's whole batch of jobs
(pytest-benchmark, a few rounds). ``test_process_against_local`` alternates the two ROUNDS times and
reports in ``extra_info`` (and prints) the seconds per job of each, their ratio, and how the process
pool's extra cost splits: the workers' start-up (Python, torch and the plugins, once per worker) and
the dispatch of each job (pickling it, the pipe both ways, the result read back), from the jobs' own
``details["phases"]``. Nothing is asserted beyond every job having run.
"""

from __future__ import annotations

import statistics
import time

import pytest


JOBS = 24
ROUNDS = 3
WORKERS = 2


@pytest.fixture
def setup(tmp_path):
    """(job runner, JOBS jobs) of the no-op model, its plugin added to the host so workers see it too."""
    from harness.host import get_host
    from harness.profiles import get_profile
    from harness.runner import Runner
    from tests.fake_plugins import noop

    host = get_host()
    host.add_plugin(noop, "bench-noop")
    runner = Runner(host, get_profile("smoke"), tmp_path, seeds=list(range(JOBS)), metrics=["bench-nothing"],
                    save_artifacts=False)
    return runner.job_runner, runner.plan(["bench-noop"], ["bench-tiny"], False)


def _run(name: str, job_runner, jobs) -> tuple:
    """(seconds, results) of every job through a fresh executor of kind ``name``."""
    from harness.executors import InProcess, ProcessPool

    executor = InProcess() if name == "local" else ProcessPool(WORKERS)
    started = time.perf_counter()
    with executor:
        results = [result for _, result in executor.results(job_runner, jobs)]
    seconds = time.perf_counter() - started
    assert len(results) == len(jobs) and all(r.status == "ok" for r in results), [r.reason for r in results]
    return seconds, results


@pytest.mark.parametrize("name", ["local", "process"])
def test_executor_overhead_per_job(benchmark, setup, name):
    job_runner, jobs = setup
    seconds = []
    benchmark.pedantic(lambda: seconds.append(_run(name, job_runner, jobs)[0]), rounds=ROUNDS, iterations=1)
    benchmark.extra_info.update({"executor": name, "jobs": len(jobs), "workers": 1 if name == "local" else WORKERS,
                                 "seconds_per_job": round(statistics.median(seconds) / len(jobs), 5)})


def test_process_against_local(benchmark, setup):
    job_runner, jobs = setup
    local, pool, starts, dispatch = [], [], [], []

    def rounds():
        for _ in range(ROUNDS):
            local.append(_run("local", job_runner, jobs)[0])
            seconds, results = _run("process", job_runner, jobs)
            pool.append(seconds)
            starts.extend(r.details["phases"]["worker_start"] for r in results if "worker_start" in r.details["phases"])
            dispatch.extend(r.details["phases"]["dispatch"] for r in results)

    benchmark.pedantic(rounds, rounds=1, iterations=1)
    per_local, per_pool = statistics.median(local) / len(jobs), statistics.median(pool) / len(jobs)
    info = {"jobs": len(jobs), "workers": WORKERS, "local_seconds_per_job": round(per_local, 5),
            "process_seconds_per_job": round(per_pool, 5), "ratio": round(per_pool / per_local, 2),
            "worker_start_seconds": round(statistics.median(starts), 3),
            "dispatch_seconds_per_job": round(statistics.median(dispatch), 5)}
    benchmark.extra_info.update(info)
    print("\nexecutor overhead, a no-op job: " + ", ".join(f"{k} {v}" for k, v in info.items()))
