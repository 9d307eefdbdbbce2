"""Fake plugins for core tests: a tiny dataset, a model whose fit raises, one that yields NaN,
one that sleeps (for timeouts and kill/resume), and an observer recording every hook call."""

from __future__ import annotations

import math
import os
import time

import torch

from harness import (Capability, DataKind, DatasetSpec, Hyperparameters, LikelihoodKind, LogLikelihood, Model,
                     ModelSpec, Split, hookimpl)
from harness.contracts import Splits


def _tiny(root=None):
    g = torch.Generator().manual_seed(0)
    make = lambda n: Split(torch.randn(n, 2, generator=g) * 0.5 + 1.0)  # noqa: E731
    return Splits(make(400), make(100), make(200))


class StandardNormal(Model):
    """N(0, I) in the dataset's dimension: exact log-density, no training."""

    def __init__(self, spec, hparams):
        self.spec, self.hparams = spec, hparams

    def fit(self, train, val, ctx):
        ctx.step(len(train))

    def log_likelihood(self, x, labels=None):
        x = x.reshape(x.shape[0], -1)
        v = -0.5 * (x**2).sum(1) - 0.5 * x.shape[1] * math.log(2 * math.pi)
        return LogLikelihood(v, LikelihoodKind.EXACT)

    def sample(self, n, generator, labels=None):
        return torch.randn(n, *self.spec.event_shape, generator=generator)


class FailingFit(StandardNormal):
    def fit(self, train, val, ctx):
        raise RuntimeError("deliberate failure in fit")


class NaNLikelihood(StandardNormal):
    def log_likelihood(self, x, labels=None):
        return LogLikelihood(torch.full((x.shape[0],), float("nan")), LikelihoodKind.EXACT)


class Sleepy(StandardNormal):
    """Sleeps in fit; appends 'start SEED PID' and 'end SEED' to the file named by HARNESS_TEST_FIT_LOG for
    every fit (PID: the process that fits, for telling where it runs)."""

    def fit(self, train, val, ctx):
        log = os.environ.get("HARNESS_TEST_FIT_LOG")
        if log:
            with open(log, "a") as f:
                f.write(f"start {ctx.seed} {os.getpid()}\n")
        deadline = time.monotonic() + float(self.hparams["sleep"])
        while time.monotonic() < deadline:  # a busy model that does not check should_stop()
            time.sleep(0.01)
        ctx.step(len(train))
        if log:
            with open(log, "a") as f:
                f.write(f"end {ctx.seed}\n")


def _spec(name, cls, **kw):
    return ModelSpec(name=name, family="fake", factory=cls, data_kinds=[DataKind.CONTINUOUS],
                     capabilities=[Capability.SAMPLE], likelihood=LikelihoodKind.EXACT,
                     default_datasets=["tiny"], **kw)


@hookimpl
def harness_register_datasets(register):
    register(DatasetSpec(name="tiny", kind=DataKind.CONTINUOUS, event_shape=(2,), load=_tiny,
                         entropy=None, description="400/100/200 draws of N(1, 0.25 I)"))


@hookimpl
def harness_register_models(register):
    register(_spec("stdnormal", StandardNormal))
    register(_spec("boom", FailingFit))
    register(_spec("nanny", NaNLikelihood))
    register(_spec("sleepy", Sleepy, hyperparameters=Hyperparameters(
        defaults={"sleep": 0.5}, docs={"sleep": "seconds fit busy-waits (without checking should_stop)"})))


class Recorder:
    """Implements every observer hook and records the calls."""

    def __init__(self):
        self.calls = []

    @hookimpl
    def harness_run_started(self, run):
        self.calls.append(("harness_run_started", run.run_id))

    @hookimpl
    def harness_job_finished(self, run, job, result):
        self.calls.append(("harness_job_finished", job.model, result.status))

    @hookimpl
    def harness_run_finished(self, run, summary):
        self.calls.append(("harness_run_finished", summary["failed"]))


class _Identity:
    fingerprint = "identity-v1"

    def features(self, x):
        return x.reshape(x.shape[0], -1).float()


@hookimpl
def harness_register_feature_extractors(register):
    from harness.contracts import FeatureExtractorSpec

    register(FeatureExtractorSpec(name="fake-identity", build=lambda dataset, device: _Identity(),
                                  description="flattened data (test fake)"))
