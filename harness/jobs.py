"""Jobs and their results: the unit of work the runner plans, an executor runs and the store keeps.

A job is (model, dataset, seed, profile) with the job's resolved hyperparameters, the dataset's
provenance hash and the metrics it will be measured with. Its key hashes everything that determines
its result, so ``--resume`` can tell a finished job from one that must run again.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from typing import Optional

import harness
from harness.contracts import Measurement

OK, FAILED, SKIPPED = "ok", "failed", "skipped"


@dataclass
class Job:
    model: str
    family: str
    dataset: str
    seed: int
    profile: str
    hparams: dict = field(default_factory=dict)
    provenance: str = ""
    metrics: tuple = ()
    key: str = ""
    skip_reason: Optional[str] = None
    skip_kind: str = ""  # why it cannot run: incompatible, data (missing or refused files), or other

    @property
    def label(self) -> str:
        return f"{self.model}/{self.dataset}/seed{self.seed}"


@dataclass
class JobResult:
    status: str
    reason: str = ""
    measurements: list = field(default_factory=list)
    metric_failures: list = field(default_factory=list)  # (metric name, reason)
    metric_skips: list = field(default_factory=list)  # (metric name, reason)
    seconds: float = 0.0
    details: dict = field(default_factory=dict)

    def rows(self):
        """(Measurement, status, reason) for the store: measured values, then failed/skipped metrics."""
        for m in self.measurements:
            yield m, OK if m.finite else FAILED, "" if m.finite else "non-finite value"
        for name, reason in self.metric_failures:
            yield _placeholder(name), FAILED, reason
        for name, reason in self.metric_skips:
            yield _placeholder(name), SKIPPED, reason


def _placeholder(metric: str) -> Measurement:
    return Measurement(metric, math.nan, "", "measured", higher_is_better=False)


def job_key(job: Job, model_version: str, plugin_version: str) -> str:
    """A hash of everything that determines a job's result: the model and its versions, the data's
    provenance, the seed, the profile, the resolved hyperparameters and the metrics."""
    payload = {
        "model": job.model, "model_version": model_version, "plugin_version": plugin_version,
        "dataset": job.dataset, "provenance": job.provenance, "seed": job.seed, "profile": job.profile,
        "hparams": job.hparams, "metrics": sorted(job.metrics), "harness": harness.__version__,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:32]
