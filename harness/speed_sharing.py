"""Speed measured once per (model, dataset) and run: which job measures it, and the others that point at it.

The seeds of a (model, dataset) train the same architecture on the same device, so their sampling and
evaluation speed, memory and FLOPs are one quantity measured again: a quarter of a quick run went into
measuring it three times. The job of the lowest seed of each group (same model, dataset, profile,
hyperparameters and origin) keeps the speed metrics (every metric whose outputs all declare role
speed); the other seeds' jobs leave them out and carry ``speed_seed``, the seed whose job measured
them. Their details say so (``speed_from_seed``), and a speed row of the summary is one job's figure,
not a mean over seeds. ``--speed-per-seed`` keeps them in every job.

The job key hashes the metrics, so a job that leaves them out has its own key (``run --resume`` with
``--speed-per-seed`` measures the speed of the other seeds as new jobs).
"""

from __future__ import annotations

import json

from harness.contracts import Role
from harness.jobs import Job, job_key, model_key


def is_speed_metric(metric) -> bool:
    """A metric whose every output declares role speed."""
    return bool(metric.outputs) and all(o.role == Role.SPEED for o in metric.outputs)


def speed_metric_ids(host) -> set:
    """``name:version`` of every registered speed metric (the form a job lists its metrics in)."""
    return {f"{m.name}:{m.version}" for m in host.registry.metrics.values() if is_speed_metric(m)}


def _group(job: Job) -> tuple:
    return (job.model, job.dataset, job.profile, str(job.origin), json.dumps(job.hparams, sort_keys=True, default=str))


def share_speed(host, jobs: list) -> list:
    """Give each (model, dataset, profile, hyperparameters, origin) group's speed metrics to the job of its
    lowest seed; the other jobs of the group drop them, point at that seed (``speed_seed``) and are keyed
    again. Skipped jobs and groups of one job are left as they are. Returns ``jobs``."""
    speed = speed_metric_ids(host)
    groups: dict = {}
    for job in jobs:
        if job.skip_reason is None and speed.intersection(job.metrics):
            groups.setdefault(_group(job), []).append(job)
    for group in groups.values():
        first = min(job.seed for job in group)
        for job in group:
            if job.seed == first:
                continue
            job.metrics = tuple(m for m in job.metrics if m not in speed)
            job.speed_seed = first
            spec = host.registry.models.get(job.model)
            versions = (spec.version, host.plugin_version("models", spec.name)) if spec is not None else ("", "")
            job.key, job.model_key = job_key(job, *versions), model_key(job, *versions)
    return jobs
