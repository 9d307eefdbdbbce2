"""Objects of "a user's own code" for tests/test_adapted.py: factories the harness measures by duck typing
(``--model py:tests.adapted_models:NAME``), with no plugin and no entry point. Each factory takes the
dataset's spec; keyword parameters with defaults are hyperparameters (``--set NAME.KEY=VALUE``)."""

import math

import numpy as np
import torch
from torch import distributions as D


def true_8gaussians(spec):
    """The true density of the 8gaussians toy, written from its definition (an equal mixture of 8 isotropic
    Gaussians of standard deviation 0.5 / 1.414, centred at the 8 compass points of a circle of radius
    4 / 1.414), as a torch.distributions object: no likelihood declaration, no glue."""
    s = 1 / math.sqrt(2)
    compass = torch.tensor([(1, 0), (-1, 0), (0, 1), (0, -1), (s, s), (s, -s), (-s, s), (-s, -s)], dtype=torch.float64)
    centres = compass * 4 / 1.414
    components = D.Independent(D.Normal(centres, torch.full_like(centres, 0.5 / 1.414)), 1)
    return D.MixtureSameFamily(D.Categorical(logits=torch.zeros(8, dtype=torch.float64)), components)


class DiagonalGaussian(torch.nn.Module):
    """A user's nn.Module: a diagonal Gaussian with log_prob, sample(n) and a fit(train, val) of its own
    (Adam on the mean negative log-likelihood; it does not report its steps)."""

    likelihood = "exact"

    def __init__(self, dim: int, steps: int, lr: float):
        super().__init__()
        self.loc = torch.nn.Parameter(torch.zeros(dim))
        self.log_scale = torch.nn.Parameter(torch.zeros(dim))
        self.steps, self.lr = steps, lr

    def distribution(self):
        return D.Independent(D.Normal(self.loc, self.log_scale.exp()), 1)

    def log_prob(self, x):
        return self.distribution().log_prob(x)

    def sample(self, n):
        return self.distribution().sample((n,))

    def fit(self, train, val):
        optimiser = torch.optim.Adam(self.parameters(), lr=self.lr)
        for _ in range(self.steps):
            optimiser.zero_grad()
            loss = -self.log_prob(train).mean()
            loss.backward()
            optimiser.step()


def gaussian_module(spec, steps=300, lr=0.05):
    return DiagonalGaussian(spec.dim, steps, lr)


class TrainedFlow(torch.nn.Module):
    """A zuko flow (its call gives the distribution) with a maximum-likelihood fit that keeps to the job's
    budget and reports its steps through the harness's fit context."""

    def __init__(self, flow, steps: int, lr: float, batch: int):
        super().__init__()
        self.flow = flow
        self.steps, self.lr, self.batch = steps, lr, batch

    def forward(self):
        return self.flow()

    def fit(self, train, val, ctx):
        optimiser = torch.optim.Adam(self.flow.parameters(), lr=self.lr)
        ctx.set_total_steps(self.steps)
        for _ in range(self.steps):
            if ctx.should_stop():
                break
            x = train[torch.randint(len(train), (self.batch,), generator=ctx.generator)]
            optimiser.zero_grad()
            loss = -self.flow().log_prob(x).mean()
            loss.backward()
            optimiser.step()
            ctx.step(len(x), loss=float(loss.detach()))


def nsf(spec, transforms=2, hidden=32, steps=400, lr=3e-3, batch=256):
    """A zuko neural spline flow on the dataset's flat coordinates."""
    import zuko

    flow = zuko.flows.NSF(spec.dim, transforms=transforms, hidden_features=[hidden, hidden])
    return TrainedFlow(flow, steps, lr, batch)


def held_out_batches(spec, batch=96):
    """The validation split of the dataset, yielded in batches (the last one shorter): a stream of samples."""
    x = spec.load(None).val.x.numpy()
    for start in range(0, len(x), batch):
        yield x[start:start + batch]


# ----------------------------------------------------------------------------- objects that are refused


class Mute:
    """Neither log_prob nor a way to sample."""


def mute(spec):
    return Mute()


class Sampler:
    def __init__(self, draw, likelihood=None):
        self.draw = draw
        if likelihood is not None:
            self.likelihood = likelihood

    def sample(self, n):
        return self.draw(n)


def raising(spec, path="weights.pt"):
    """A factory that fails (a weights file that is not there)."""
    raise FileNotFoundError(f"no weights at {path}")


def wrong_shape(spec):
    return Sampler(lambda n: torch.randn(n, spec.dim + 1))


def complex_samples(spec):
    return Sampler(lambda n: torch.randn(n, spec.dim, dtype=torch.complex64))


def wrong_batches(spec):
    """A stream whose batches have one coordinate too many."""
    while True:
        yield np.zeros((10, spec.dim + 1), np.float32)


def numpy_sampler(spec):
    """Draws from numpy's global generator, which the harness does not seed: not reproducible."""
    return Sampler(lambda n: np.random.default_rng().standard_normal((n, spec.dim)).astype(np.float32))


class Scored(Sampler):
    def __init__(self, draw, score, likelihood=None):
        super().__init__(draw, likelihood)
        self.score = score

    def log_prob(self, x):
        return self.score(x)


def _standard_normal(x):
    return D.Independent(D.Normal(torch.zeros(x.shape[1]), torch.ones(x.shape[1])), 1).log_prob(x)


def undeclared(spec):
    """log_prob without a likelihood declaration."""
    return Scored(lambda n: torch.randn(n, spec.dim), _standard_normal)


def nan_density(spec):
    """A declared exact density whose log_prob is NaN on the right half-plane."""
    def score(x):
        values = _standard_normal(x)
        return torch.where(x[:, 0] > 0, torch.full_like(values, float("nan")), values)

    return Scored(lambda n: torch.randn(n, spec.dim), score, likelihood="exact")
