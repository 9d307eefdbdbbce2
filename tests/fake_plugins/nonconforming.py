"""Plugins that break the contract on purpose, one way each, for the conformance kit's tests.

Each model is a diagonal Gaussian (exact likelihood, closed-form fit) with one deliberate fault;
``diag`` itself is correct.
"""

from __future__ import annotations

import math

import torch

from harness import (Capability, DataKind, DatasetSpec, LikelihoodKind, LogLikelihood, Measurement, MetricSpec, Model,
                     ModelSpec, Output, Split, hookimpl)
from harness.contracts import Splits

OFFSET = 0.5  # nats added to the log-likelihood of the shifted model


class DiagonalGaussian(Model):
    def __init__(self, spec, hparams):
        self.spec = spec
        self.loc = torch.zeros(spec.dim, dtype=torch.float64)
        self.scale = torch.ones(spec.dim, dtype=torch.float64)

    def fit(self, train, val, ctx):
        x = train.x.reshape(len(train), -1).double()
        self.loc, self.scale = x.mean(0), x.std(0).clamp_min(1e-3)
        ctx.step(len(train))

    def log_likelihood(self, x, labels=None):
        z = (x.reshape(x.shape[0], -1).double() - self.loc) / self.scale
        lp = (-0.5 * z * z - torch.log(self.scale) - 0.5 * math.log(2 * math.pi)).sum(1)
        return LogLikelihood(lp.float(), LikelihoodKind.EXACT)

    def sample(self, n, generator, labels=None):
        z = torch.randn(n, self.loc.shape[0], generator=generator, dtype=torch.float64)
        return (self.loc + self.scale * z).float().reshape(n, *self.spec.event_shape)


class Shifted(DiagonalGaussian):
    """log-likelihood off by a constant: not normalised."""

    def log_likelihood(self, x, labels=None):
        ll = super().log_likelihood(x)
        return LogLikelihood(ll.values + OFFSET, ll.kind)


class Unseeded(DiagonalGaussian):
    """Samples from the global random state, ignoring its generator."""

    def sample(self, n, generator, labels=None):
        z = torch.randn(n, self.loc.shape[0], dtype=torch.float64)
        return (self.loc + self.scale * z).float().reshape(n, *self.spec.event_shape)


class Float64Samples(DiagonalGaussian):
    def sample(self, n, generator, labels=None):
        return super().sample(n, generator).double()


class ClaimsEstimate(DiagonalGaussian):
    """Declared exact, reports an estimate."""

    def log_likelihood(self, x, labels=None):
        return LogLikelihood(super().log_likelihood(x).values, LikelihoodKind.ESTIMATE)


class BiasedEstimate(DiagonalGaussian):
    """An estimate off by far more than the standard error it reports."""

    def log_likelihood(self, x, labels=None):
        return LogLikelihood(super().log_likelihood(x).values + OFFSET, LikelihoodKind.ESTIMATE, shared_stderr=0.01)


class LooseBound(DiagonalGaussian):
    """Reports "bound" for values above the exact log-likelihood."""

    def log_likelihood(self, x, labels=None):
        return LogLikelihood(super().log_likelihood(x).values + 0.3, LikelihoodKind.BOUND)


class LabelBlind(DiagonalGaussian):
    """Declares the conditional capability and ignores its labels."""


class Forgetful(DiagonalGaussian):
    """Keeps its fitted state in plain floats, which export_state does not see."""

    def fit(self, train, val, ctx):
        super().fit(train, val, ctx)
        self.loc_values = self.loc.tolist()
        self.scale_values = self.scale.tolist()
        del self.loc, self.scale

    def _params(self):
        return (torch.tensor(self.loc_values, dtype=torch.float64), torch.tensor(self.scale_values, dtype=torch.float64))

    def log_likelihood(self, x, labels=None):
        self.loc, self.scale = self._params()
        try:
            return super().log_likelihood(x)
        finally:
            del self.loc, self.scale

    def sample(self, n, generator, labels=None):
        self.loc, self.scale = self._params()
        try:
            return super().sample(n, generator)
        finally:
            del self.loc, self.scale


def _model(name, cls, likelihood=LikelihoodKind.EXACT, capabilities=(Capability.SAMPLE,), **kw):
    return ModelSpec(name=name, family="nonconforming", factory=cls, data_kinds=[DataKind.CONTINUOUS],
                     capabilities=capabilities, likelihood=likelihood, **kw)


def _raises(dataset_spec):
    raise RuntimeError("accepts() is broken")


MODELS = [
    _model("diag", DiagonalGaussian),
    _model("shifted", Shifted),
    _model("unseeded", Unseeded),
    _model("float64-samples", Float64Samples),
    _model("claims-estimate", ClaimsEstimate),
    _model("loose-bound", LooseBound, likelihood=LikelihoodKind.BOUND),
    _model("biased-estimate", BiasedEstimate, likelihood=LikelihoodKind.ESTIMATE),
    _model("label-blind", LabelBlind, capabilities=(Capability.SAMPLE, Capability.CONDITIONAL)),
    _model("forgetful", Forgetful),
    _model("touchy", DiagonalGaussian, accepts=_raises),  # fails outside any single check
]


@hookimpl
def harness_register_models(register):
    for spec in MODELS:
        register(spec)


# ----------------------------------------------------------------------------- datasets

TRUE_SD = 0.7


def _normal_splits(generator=None):
    g = generator or torch.Generator().manual_seed(5)
    return Splits(*(Split(torch.randn(n, 2, generator=g) * TRUE_SD) for n in (2000, 200, 500)))


def _normal_log_density(x):
    x = x.reshape(x.shape[0], -1).double()
    return (-0.5 * (x / TRUE_SD) ** 2 - math.log(TRUE_SD) - 0.5 * math.log(2 * math.pi)).sum(1)


NORMAL_ENTROPY = 2 * (0.5 * math.log(2 * math.pi * math.e) + math.log(TRUE_SD))


def _each(splits, change):
    return Splits(change(splits.train), change(splits.val), change(splits.test))


def _dataset(name, **kw):
    base = dict(name=name, kind=DataKind.CONTINUOUS, event_shape=(2,), load=lambda root=None: _normal_splits(),
                log_density=_normal_log_density, entropy=NORMAL_ENTROPY)
    base.update(kw)
    return DatasetSpec(**base)


DATASETS = [
    _dataset("normal2d"),
    _dataset("unseeded-data", load=lambda root=None: _normal_splits(torch.Generator().manual_seed(
        int(torch.randint(0, 2**31, (1,)))))),
    _dataset("wrong-entropy", entropy=NORMAL_ENTROPY + 0.1),
    _dataset("unnormalised", log_density=lambda x: _normal_log_density(x) + 0.2),
    _dataset("float64-data", load=lambda root=None: _each(_normal_splits(), lambda s: Split(s.x.double()))),
    _dataset("stray-labels", load=lambda root=None: _each(_normal_splits(), lambda s: Split(
        s.x, torch.zeros(len(s), dtype=torch.long)))),
]


@hookimpl
def harness_register_datasets(register):
    for spec in DATASETS:
        register(spec)


# ----------------------------------------------------------------------------- metrics


def _mean_norm(ctx):
    s = ctx.model.sample(100, ctx.generator())
    return [Measurement("mean_norm", float(s.double().mean(0).norm()), n=100),
            Measurement("surprise", 1.0, estimator="statistic")]


@hookimpl
def harness_register_metrics(register):
    register(MetricSpec(name="undeclared", compute=_mean_norm, requires=[Capability.SAMPLE],
                        outputs=[Output("mean_norm", "units", estimator="statistic")]))
