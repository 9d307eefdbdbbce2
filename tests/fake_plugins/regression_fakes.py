"""Fake plugins for the regression-gate tests (tests/test_regression.py).

``RegressionFakes(...)`` is a plugin object; its arguments plant the changes the gate must judge:

- dataset ``reg-blobs``: a correlated 2-D Gaussian with fixed seeded splits (1000/200/1000) and
  its exact entropy (so the built-in ``nll`` metric also reports ``nll_gap``); ``dataset_shift``
  moves the data, which gives the dataset another provenance hash;
- model ``fake-gaussian``: a full-covariance Gaussian fitted on ``fit_examples`` training points
  drawn with the job's generator, so its test NLL genuinely varies with the seed; its covariance is
  multiplied by ``variance_scale`` (1: the fit; 3: a planted, clearly worse likelihood);
  ``fail_fit`` makes fit raise;
- metric ``fake_score`` (higher is better, unit "score"): ``0.8 + score_offset`` plus seed noise
  (sd 0.02) drawn at fit time;
- metric ``fake_rate`` (unit samples/s, estimator measured): a deterministic stand-in for a
  throughput, ``rate`` times seed noise (sd 5%), so speed verdicts do not depend on machine load;
- metric ``fake_loss``: an outside metric with its own declaration (lower is better, an absolute
  tolerance of 0.25, shown first in tables): ``1.0 + loss_offset`` plus seed noise (sd 0.02).

``TwinFakes(rate=...)`` is a second plugin object registering one more model of the same family,
``fake-twin`` (the same Gaussian, its own planted ``rate``): the rows of a plugin that may or may not
be installed, for the machine rule and "plugin not installed" tests (tests/test_machine_rule.py).
"""

from __future__ import annotations

import math

import torch

from harness import (Capability, DataKind, DatasetSpec, Hyperparameters, LikelihoodKind, LogLikelihood, Measurement,
                     MetricSpec, Model, ModelSpec, Output, Split, Tolerance, hookimpl)
from harness.contracts import Splits

FAMILY = "fake-regression"
MEAN = torch.tensor([1.0, -1.0], dtype=torch.float64)
COV = torch.tensor([[1.0, 0.6], [0.6, 0.5]], dtype=torch.float64)
ENTROPY = 0.5 * math.log((2 * math.pi * math.e) ** 2 * float(torch.linalg.det(COV)))


def blobs(shift: float = 0.0) -> Splits:
    g = torch.Generator().manual_seed(2024)
    chol = torch.linalg.cholesky(COV)

    def draw(n):
        z = torch.randn(n, 2, generator=g, dtype=torch.float64)
        return Split((MEAN + shift + z @ chol.T).float())

    return Splits(draw(1000), draw(200), draw(1000))


class SubsampledGaussian(Model):
    def __init__(self, spec, hparams, variance_scale=1.0, score_offset=0.0, rate=1000.0, fail_fit=False,
                 loss_offset=0.0):
        self.spec = spec
        self.fit_examples = int(hparams["fit_examples"])
        self.loss_offset, self.loss = loss_offset, None
        self.variance_scale, self.score_offset, self.nominal_rate = variance_scale, score_offset, rate
        self.fail_fit = fail_fit
        self.mu = self.chol = None
        self.score = self.rate = None

    def fit(self, train, val, ctx):
        if self.fail_fit:
            raise RuntimeError("planted failure in fit")
        idx = torch.randperm(len(train), generator=ctx.generator)[: self.fit_examples]
        y = train.x[idx].double()
        self.mu = y.mean(0)
        cov = torch.cov(y.T) * self.variance_scale
        self.chol = torch.linalg.cholesky(cov)
        noise = torch.randn(2, generator=ctx.generator, dtype=torch.float64)
        self.score = 0.8 + self.score_offset + 0.02 * float(noise[0])
        self.rate = self.nominal_rate * math.exp(0.05 * float(noise[1]))
        self.loss = 1.0 + self.loss_offset + 0.02 * float(torch.randn(1, generator=ctx.generator, dtype=torch.float64))
        ctx.step(len(y))

    def log_likelihood(self, x, labels=None):
        z = torch.linalg.solve_triangular(self.chol, (x.double() - self.mu).T, upper=False).T
        log_det = torch.log(torch.diagonal(self.chol)).sum()
        return LogLikelihood(-0.5 * (z * z).sum(1) - log_det - math.log(2 * math.pi), LikelihoodKind.EXACT)

    def sample(self, n, generator, labels=None):
        z = torch.randn(n, 2, generator=generator, dtype=torch.float64)
        return (self.mu + z @ self.chol.T).float()


def _only_fakes(model_spec, dataset_spec):
    return None if model_spec.family == FAMILY else f"{model_spec.name} is not a {FAMILY} model"


def _score(ctx):
    return [Measurement("fake_score", ctx.model.score, "score", "statistic", higher_is_better=True, stderr=0.01, n=1)]


def _rate(ctx):
    m = ctx.model
    return [Measurement("fake_rate", m.rate, "samples/s", "measured", higher_is_better=True, stderr=0.02 * m.rate, n=3)]


def _loss(ctx):
    return [Measurement("fake_loss", ctx.model.loss, stderr=0.01, n=1)]


LOSS_OUTPUT = Output("fake_loss", unit="loss", higher_is_better=False, estimator="statistic",
                     tolerance=Tolerance(absolute=0.25), order=1, description="an outside metric's own declaration")


class RegressionFakes:
    """A plugin object; see the module docstring for what each argument plants."""

    def __init__(self, variance_scale=1.0, score_offset=0.0, rate=1000.0, dataset_shift=0.0, fail_fit=False,
                 loss_offset=0.0):
        self.model_args = dict(variance_scale=variance_scale, score_offset=score_offset, rate=rate, fail_fit=fail_fit,
                               loss_offset=loss_offset)
        self.dataset_shift = dataset_shift

    @hookimpl
    def harness_register_datasets(self, register):
        shift = self.dataset_shift
        register(DatasetSpec(name="reg-blobs", kind=DataKind.CONTINUOUS, event_shape=(2,),
                             load=lambda root: blobs(shift), entropy=ENTROPY,
                             description="correlated 2-D Gaussian (1000/200/1000), for the regression tests"))

    @hookimpl
    def harness_register_models(self, register):
        args = self.model_args
        register(ModelSpec(
            name="fake-gaussian", family=FAMILY,
            factory=lambda spec, hparams: SubsampledGaussian(spec, hparams, **args),
            data_kinds=[DataKind.CONTINUOUS], capabilities=[Capability.SAMPLE], likelihood=LikelihoodKind.EXACT,
            hyperparameters=Hyperparameters(defaults={"fit_examples": 100}),
            default_datasets=["reg-blobs"],
            description="Gaussian fitted on a seeded random subset; planted variance inflation"))

    @hookimpl
    def harness_register_metrics(self, register):
        register(MetricSpec(name="fake_score", unit="score", higher_is_better=True, compute=_score,
                            applies=_only_fakes, description="a higher-is-better statistic (test fake)"))
        register(MetricSpec(name="fake_rate", compute=_rate, applies=_only_fakes,
                            outputs=[Output("fake_rate", "samples/s", True, kind="speed", scaling="rate")],
                            description="a deterministic stand-in for a throughput (test fake)"))
        register(MetricSpec(name="fake_loss", compute=_loss, outputs=[LOSS_OUTPUT], applies=_only_fakes,
                            description="a lower-is-better metric with its own tolerance (test fake)"))


class TwinFakes:
    """A second plugin: model ``fake-twin`` (see the module docstring)."""

    def __init__(self, rate=1000.0):
        self.rate = rate

    @hookimpl
    def harness_register_models(self, register):
        rate = self.rate
        register(ModelSpec(
            name="fake-twin", family=FAMILY,
            factory=lambda spec, hparams: SubsampledGaussian(spec, hparams, rate=rate),
            data_kinds=[DataKind.CONTINUOUS], capabilities=[Capability.SAMPLE], likelihood=LikelihoodKind.EXACT,
            hyperparameters=Hyperparameters(defaults={"fit_examples": 100}),
            default_datasets=["reg-blobs"],
            description="the fake Gaussian again, registered by another plugin"))
