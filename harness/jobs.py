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
from enum import Enum
from typing import Optional

import harness
from harness.contracts import Measurement


class JobStatus(str, Enum):
    """How a job, or one of its measurements, ended (the store's ``status``)."""

    OK = "ok"
    FAILED = "failed"  # raised, produced NaN/inf, passed its time limit, or its worker died
    SKIPPED = "skipped"  # could not run (see :class:`SkipKind`), or a metric did not apply

    def __str__(self) -> str:
        return self.value


class Origin(str, Enum):
    """Where a job's model comes from (job details ``source``)."""

    TRAINED = "trained"  # fitted by the job
    ARTIFACT = "artifact"  # restored from a model an earlier job saved (``origin_path``: its folder)
    CHECKPOINT = "checkpoint"  # restored from a weights file (``origin_path``: the file)
    SAMPLES = "samples"  # samples another generator drew: nothing to fit or restore

    def __str__(self) -> str:
        return self.value


class SkipKind(str, Enum):
    """Why a planned job cannot run."""

    INCOMPATIBLE = "incompatible"  # the model does not accept the dataset
    DATA = "data"  # the dataset's files are missing or refused
    OTHER = "other"

    def __str__(self) -> str:
        return self.value


# A seed seeds torch's generators (with offsets added) and is stored as an SQLite integer: 0 to 2**32 - 1.
MAX_SEED = 2**32 - 1


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
    skip_kind: Optional[SkipKind] = None  # why it cannot run (None: it can)
    origin: Origin = Origin.TRAINED  # for SAMPLES only sample-based quality metrics apply
    origin_path: str = ""
    weights: str = ""  # sha256 of the weights or samples a loaded job starts from; part of its key
    model_key: str = ""  # the job key without the metrics: what determines the fitted model
    speed_seed: Optional[int] = None  # the seed whose job measures this one's speed (harness.speed_sharing)

    @property
    def label(self) -> str:
        return f"{self.model}/{self.dataset}/seed{self.seed}"


def check_seeds(seeds, source: str) -> list:
    """``seeds`` as a list of ints, each 0..MAX_SEED; :class:`harness.UserError` naming ``source`` otherwise."""
    from harness.errors import UserError

    bad = [s for s in seeds if isinstance(s, bool) or not isinstance(s, int) or not 0 <= s <= MAX_SEED]
    if bad:
        raise UserError(f"{source}: a seed is an integer from 0 to {MAX_SEED}, not {bad[0]!r}")
    return list(seeds)


@dataclass
class JobResult:
    status: JobStatus
    reason: str = ""
    measurements: list = field(default_factory=list)
    metric_failures: list = field(default_factory=list)  # (metric name, reason)
    metric_skips: list = field(default_factory=list)  # (metric name, reason)
    seconds: float = 0.0
    details: dict = field(default_factory=dict)

    def rows(self):
        """(Measurement, status, reason) for the store: measured values, then failed/skipped metrics."""
        for m in self.measurements:
            yield m, JobStatus.OK if m.finite else JobStatus.FAILED, "" if m.finite else "non-finite value"
        for name, reason in self.metric_failures:
            yield _placeholder(name), JobStatus.FAILED, reason
        for name, reason in self.metric_skips:
            yield _placeholder(name), JobStatus.SKIPPED, reason


def _placeholder(metric: str) -> Measurement:
    """The row of a metric that failed or was skipped: no value and no estimator (what kind of row it is
    comes from its metric's declaration, not from a mark it never earned)."""
    return Measurement(metric, math.nan, "", None, higher_is_better=False)


def _model_payload(job: Job, model_version: str, plugin_version: str) -> dict:
    payload = {
        "model": job.model, "model_version": model_version, "plugin_version": plugin_version,
        "dataset": job.dataset, "provenance": job.provenance, "seed": job.seed, "profile": job.profile,
        "hparams": job.hparams, "harness": harness.__version__,
    }
    if job.weights:  # a loaded job: the weights it starts from decide its results
        payload["weights"] = job.weights
    return payload


def _digest(payload: dict) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:32]


def job_key(job: Job, model_version: str, plugin_version: str) -> str:
    """A hash of everything that determines a job's result: the model and its versions, the data's
    provenance, the seed, the profile, the resolved hyperparameters, the weights a loaded job starts
    from, and the metrics."""
    return _digest({**_model_payload(job, model_version, plugin_version), "metrics": sorted(job.metrics)})


def model_key(job: Job, model_version: str, plugin_version: str) -> str:
    """The job key without the metrics: what determines the fitted model. ``run --resume`` with another
    metric selection finds a saved model by it (the job key changes with the metrics; the model does not)."""
    return _digest(_model_payload(job, model_version, plugin_version))
