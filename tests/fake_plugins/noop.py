"""A plugin that costs nothing: a model that fits nothing and draws zeros, a tiny dataset, a metric that
measures nothing; the executor benchmark (tests/benchmarks/test_executors.py) times the harness around it."""

from __future__ import annotations

import torch

from harness import (Capability, DataKind, DatasetSpec, Measurement, MetricSpec, Model, ModelSpec, Output, Split,
                     hookimpl)
from harness.contracts import Splits


def _tiny(root=None):
    x = torch.zeros(8, 2)
    return Splits(Split(x), Split(x), Split(x))


class Noop(Model):
    """Fits nothing and draws zeros."""

    def __init__(self, spec, hparams):
        self.spec = spec

    def fit(self, train, val, ctx):
        ctx.step(1)

    def sample(self, n, generator=None, labels=None):
        return torch.zeros(n, 2)


def _nothing(ctx):
    return [Measurement("nothing", 0.0)]


@hookimpl
def harness_register_datasets(register):
    register(DatasetSpec(name="bench-tiny", kind=DataKind.CONTINUOUS, event_shape=(2,), load=_tiny))


@hookimpl
def harness_register_models(register):
    register(ModelSpec(name="bench-noop", family="bench", factory=Noop, data_kinds=[DataKind.CONTINUOUS],
                       capabilities=[Capability.SAMPLE], default_datasets=["bench-tiny"]))


@hookimpl
def harness_register_metrics(register):
    register(MetricSpec("bench-nothing", _nothing, [Output("nothing", "", higher_is_better=True,
                                                           estimator="statistic")]))
