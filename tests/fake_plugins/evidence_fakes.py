"""Fake plugins for the evidence tests (tests/test_evidence_runs.py): densities whose expected NLLs
differ by a small known amount, run as real models through the runner.

- dataset ``ev-normal``: N(0, I) in 2-D, 1000 / 200 / 8000 examples drawn with a fixed generator, with
  its true log-density and entropy (so ``nll_gap`` applies too);
- model ``ev-truth``: N(mu_s, exp(delta_s) I), the truth off by a little in each seed: mu_s and delta_s
  drawn from the job's generator with sd ``SEED_SD`` (about 1% in mean and log-variance), as training
  runs of a real model differ;
- model ``ev-wide``: the same, with the variance ``1 + WIDEN`` times larger: its expected NLL exceeds
  the truth's by ``KL_WIDE`` = D/2 (log(1 + e) + 1 / (1 + e) - 1) = 0.0044 nats (e = 0.1, D = 2);
- model ``ev-twin``: ``ev-truth`` again under another name (two copies of one model);
- hyperparameter ``draws`` of every model: recorded in its likelihood's protocol (it changes nothing
  else), so two runs that differ only in ``--set ev-truth.draws=N`` differ only in a protocol setting.

Nothing is trained: ``fit`` only draws the seed's perturbation.
"""

from __future__ import annotations

import math

import torch

from harness import (Capability, DataKind, DatasetSpec, Hyperparameters, LikelihoodKind, LogLikelihood, Model,
                     ModelSpec, Split, hookimpl)
from harness.contracts import Splits

DIM = 2
WIDEN = 0.1
SEED_SD = 0.01
KL_WIDE = DIM / 2 * (math.log(1 + WIDEN) + 1 / (1 + WIDEN) - 1)
ENTROPY = DIM / 2 * math.log(2 * math.pi * math.e)
TEST_EXAMPLES = 8000


def normal_log_density(x: torch.Tensor, mean, log_var: float) -> torch.Tensor:
    """log N(x; mean, exp(log_var) I), float64, per row of ``x``."""
    x = x.double().reshape(x.shape[0], -1)
    d = x.shape[1]
    return -0.5 * (((x - mean) ** 2).sum(1) * math.exp(-log_var) + d * (log_var + math.log(2 * math.pi)))


def splits(seed: int = 7, test: int = TEST_EXAMPLES) -> Splits:
    g = torch.Generator().manual_seed(seed)
    return Splits(*(Split(torch.randn(n, DIM, generator=g)) for n in (1000, 200, test)))


class SeededGaussian(Model):
    """N(mu_s, (1 + widen) exp(delta_s) I): the seed's perturbation (mu_s, delta_s) is drawn in fit."""

    widen = 0.0

    def __init__(self, spec, hparams):
        self.spec, self.hparams = spec, hparams
        self.mean, self.log_var = torch.zeros(DIM, dtype=torch.float64), math.log(1 + self.widen)

    def perturb(self, generator: torch.Generator) -> None:
        noise = torch.randn(DIM + 1, generator=generator, dtype=torch.float64) * SEED_SD
        self.mean, self.log_var = noise[:DIM], math.log(1 + self.widen) + float(noise[DIM])

    def fit(self, train, val, ctx):
        self.perturb(ctx.generator)
        ctx.step(len(train))

    def log_likelihood(self, x, labels=None):
        return LogLikelihood(normal_log_density(x, self.mean, self.log_var).float(), LikelihoodKind.EXACT,
                             protocol={"draws": int(self.hparams["draws"])})

    def sample(self, n, generator, labels=None):
        z = torch.randn(n, DIM, generator=generator, dtype=torch.float64)
        return (self.mean + z * math.exp(self.log_var / 2)).float()


class WideGaussian(SeededGaussian):
    widen = WIDEN


def _spec(name, cls):
    return ModelSpec(name=name, family="ev-gaussian", factory=cls, data_kinds=[DataKind.CONTINUOUS],
                     capabilities=[Capability.SAMPLE], likelihood=LikelihoodKind.EXACT,
                     hyperparameters=Hyperparameters(defaults={"draws": 1},
                                                     docs={"draws": "a likelihood setting recorded in its protocol"}),
                     default_datasets=["ev-normal"], description=f"{cls.__name__} (evidence tests)")


@hookimpl
def harness_register_datasets(register):
    register(DatasetSpec(name="ev-normal", kind=DataKind.CONTINUOUS, event_shape=(DIM,), load=lambda root: splits(),
                         log_density=lambda x: normal_log_density(x, torch.zeros(DIM, dtype=torch.float64), 0.0),
                         entropy=ENTROPY, description="N(0, I) in 2-D, 8000 test examples (evidence tests)"))


@hookimpl
def harness_register_models(register):
    register(_spec("ev-truth", SeededGaussian))
    register(_spec("ev-twin", SeededGaussian))
    register(_spec("ev-wide", WideGaussian))
