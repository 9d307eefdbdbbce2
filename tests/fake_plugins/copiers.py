"""Fake "models" for the copy metrics: each fit keeps a pool of real examples and sampling draws from
it uniformly with replacement.

- ``copy-train``: the training split, verbatim;
- ``copy-train-noisy``: the training split with a small change to each draw: on continuous data
  Gaussian noise whose length is about a tenth of the training split's median nearest-neighbour
  distance; on discrete and binary data each value moves one level up or down with probability 0.05
  (clamped to the levels: a binary value flips);
- ``copy-test``: the dataset's held-out test split (new data to the training split: not a copier).
"""

from __future__ import annotations

import math

import torch

from harness import Capability, DataKind, Model, ModelSpec, hookimpl

NOISE_OF_NEIGHBOUR_DISTANCE = 0.1  # continuous data: |noise| ~ this x the median nearest-neighbour distance
LEVEL_CHANGE_PROBABILITY = 0.05  # discrete data: chance that a value moves one level


class Copier(Model):
    """Samples by drawing examples of a pool (the training split) uniformly with replacement."""

    def __init__(self, spec, hparams):
        self.spec = spec

    def pool_from(self, train) -> torch.Tensor:
        return train.x.clone()

    def fit(self, train, val, ctx):
        self.pool = self.pool_from(train)
        ctx.step(len(train))

    def sample(self, n, generator, labels=None):
        return self.pool[torch.randint(len(self.pool), (n,), generator=generator)].clone()


class NoisyCopier(Copier):
    def fit(self, train, val, ctx):
        super().fit(train, val, ctx)
        if self.spec.kind is DataKind.CONTINUOUS:
            from sklearn.neighbors import NearestNeighbors

            flat = self.pool.reshape(len(self.pool), -1).double().numpy()
            distances, _ = NearestNeighbors(n_neighbors=2).fit(flat).kneighbors(flat)
            median = float(torch.from_numpy(distances[:, 1]).median())
            self.noise_sd = torch.tensor(NOISE_OF_NEIGHBOUR_DISTANCE * median / math.sqrt(flat.shape[1]))

    def sample(self, n, generator, labels=None):
        x = super().sample(n, generator)
        if self.spec.kind is DataKind.CONTINUOUS:
            return x + self.noise_sd * torch.randn(x.shape, generator=generator, dtype=x.dtype)
        move = torch.rand(x.shape, generator=generator) < LEVEL_CHANGE_PROBABILITY
        step = torch.where(torch.rand(x.shape, generator=generator) < 0.5, -1.0, 1.0)
        top = float(self.spec.levels - 1)
        shifted = torch.where((x + step < 0) | (x + step > top), x - step, x + step)  # off the levels: the other way
        return torch.where(move, shifted, x)


class TestCopier(Copier):
    """Draws the dataset's held-out test examples (loaded from the built-in dataset's own loader)."""

    __test__ = False  # not a pytest test class

    def pool_from(self, train) -> torch.Tensor:
        return self.spec.load(None).test.x.clone()


def _spec(name: str, factory, description: str) -> ModelSpec:
    return ModelSpec(name=name, family="copier", factory=factory,
                     data_kinds=[DataKind.CONTINUOUS, DataKind.DISCRETE, DataKind.BINARY],
                     capabilities=[Capability.SAMPLE], default_datasets=["digits", "8gaussians"],
                     description=description)


@hookimpl
def harness_register_models(register):
    register(_spec("copy-train", Copier, "returns training examples verbatim"))
    register(_spec("copy-train-noisy", NoisyCopier, "returns training examples with a small change"))
    register(_spec("copy-test", TestCopier, "returns held-out test examples"))
