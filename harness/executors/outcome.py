"""From a job's attempts to its JobResult, and when to try again.

``--retries N`` gives a job whose worker died (a signal or an exit code: a segfault, the out-of-memory
killer, a lost node) up to N more attempts on a fresh worker. A job that raised, produced NaN or passed
its time limit is never retried: it would do the same again.
"""

from __future__ import annotations

import pickle

from harness.executors.isolation import ANSWERED, DIED, Attempt
from harness.jobs import JobResult, JobStatus


def should_retry(attempts: list, retries: int) -> bool:
    return attempts[-1].outcome == DIED and len(attempts) <= retries


def job_result(attempts: list) -> JobResult:
    """The result the coordinator stores for a job, from its attempts (the last one decides)."""
    last: Attempt = attempts[-1]
    if last.outcome == ANSWERED:
        try:
            result = pickle.loads(last.result)
        except Exception as exc:
            result = JobResult(JobStatus.FAILED, f"the worker's result could not be read: {type(exc).__name__}: {exc}",
                               seconds=last.seconds)
    else:
        result = JobResult(JobStatus.FAILED, last.reason, seconds=last.seconds)
        earlier = [a.reason for a in attempts[:-1]]
        if earlier and all(reason == last.reason for reason in earlier):
            result.reason += f" (on each of {len(attempts)} attempts)"
        elif earlier:
            result.reason += f" (attempt {len(attempts)}; before: {'; '.join(earlier)})"
    deaths = [a.reason for a in attempts[:-1]]
    if deaths:
        result.details["worker_deaths"] = deaths
    return result
