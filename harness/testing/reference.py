"""The kit's reference models and feature extractor, for checking metrics (and checked themselves).

:class:`IndependentReference` is the simplest honest generative model: given the class, every unit is
independent (a Gaussian per unit for continuous data; a categorical over the levels per unit,
add-one smoothed, for discrete and binary data), and the class has its training frequency. Its
log-likelihood is exact, log p(x) = logsumexp_c [log pi_c + log p(x | c)] (or log p(x | y) when
labels are given), and sampling is ancestral. On unlabelled data it has one class.

:data:`REFERENCE` declares it with every capability (sample, conditional, exact likelihood);
:data:`SAMPLER` declares the same model as sample-only, for metrics meant for models without a
likelihood. :data:`RAW_FEATURES` is a feature extractor giving the data's own coordinates, so
fidelity metrics apply to the kit's tiny datasets.
"""

from __future__ import annotations

import math

import torch

from harness.contracts import (Capability, DataKind, FeatureExtractorSpec, LikelihoodKind, LogLikelihood, Model,
                               ModelSpec)
from harness.testing.tiny import RAW_EXTRACTOR

MIN_SD = 1e-3


class IndependentReference(Model):
    def __init__(self, spec, hparams=None):
        self.spec = spec
        self.levels = None if spec.kind is DataKind.CONTINUOUS else int(spec.levels)
        self.log_prior = self.mean = self.sd = self.log_probs = None

    def fit(self, train, val, ctx) -> None:
        ctx.set_total_steps(1)
        x = train.x.reshape(len(train), -1).double()
        y = train.y if train.y is not None and self.spec.num_classes else torch.zeros(len(train), dtype=torch.long)
        classes = max(int(self.spec.num_classes), 1)
        counts = torch.bincount(y, minlength=classes).double()
        self.log_prior = torch.log(counts.clamp_min(1) / counts.clamp_min(1).sum())
        rows = [x[y == c] if counts[c] > 0 else x for c in range(classes)]
        if self.levels is None:
            self.mean = torch.stack([r.mean(0) for r in rows])
            self.sd = torch.stack([r.std(0, unbiased=False).clamp_min(MIN_SD) for r in rows])
        else:
            onehot = [torch.nn.functional.one_hot(r.long(), self.levels).double().sum(0) + 1 for r in rows]
            self.log_probs = torch.stack([torch.log(o / o.sum(-1, keepdim=True)) for o in onehot])  # (C, D, K)
        ctx.step(len(train))

    def _log_joint(self, x: torch.Tensor) -> torch.Tensor:
        """log pi_c + log p(x | c), shape (N, C)."""
        x = x.reshape(x.shape[0], -1).double().cpu()
        if self.levels is None:
            z = (x[:, None, :] - self.mean[None]) / self.sd[None]
            per_class = (-0.5 * z * z - torch.log(self.sd)[None] - 0.5 * math.log(2 * math.pi)).sum(-1)
        else:
            idx = x.long().clamp(0, self.levels - 1)
            dims = torch.arange(x.shape[1])
            per_class = torch.stack([self.log_probs[c][dims, idx].sum(1) for c in range(len(self.log_prior))], 1)
        return per_class + self.log_prior[None]

    def log_likelihood(self, x, labels=None) -> LogLikelihood:
        joint = self._log_joint(x)
        if labels is None:
            values = torch.logsumexp(joint, 1)
        else:
            values = joint.gather(1, labels.long().cpu()[:, None]).squeeze(1) - self.log_prior[labels.long().cpu()]
        return LogLikelihood(values.float(), LikelihoodKind.EXACT)

    def sample(self, n, generator, labels=None) -> torch.Tensor:
        if labels is None:
            labels = torch.multinomial(torch.exp(self.log_prior), n, replacement=True, generator=generator)
        labels = labels.long().cpu()
        if self.levels is None:
            z = torch.randn(n, self.mean.shape[1], generator=generator, dtype=torch.float64)
            x = self.mean[labels] + self.sd[labels] * z
        else:
            probs = torch.exp(self.log_probs[labels]).reshape(-1, self.levels)
            x = torch.multinomial(probs, 1, generator=generator).reshape(n, -1).double()
        return x.float().reshape(n, *self.spec.event_shape)


ALL_KINDS = (DataKind.CONTINUOUS, DataKind.DISCRETE, DataKind.BINARY)

REFERENCE = ModelSpec(
    name="conformance-reference", family="conformance", factory=IndependentReference, data_kinds=ALL_KINDS,
    capabilities=[Capability.SAMPLE, Capability.CONDITIONAL], likelihood=LikelihoodKind.EXACT,
    description="harness.testing: independent units given the class; exact likelihood, conditional sampling")
SAMPLER = ModelSpec(
    name="conformance-sampler", family="conformance", factory=IndependentReference, data_kinds=ALL_KINDS,
    capabilities=[Capability.SAMPLE],
    description="harness.testing: the reference model declared as sample-only")
REFERENCE_MODELS = (REFERENCE, SAMPLER)


class RawFeatures:
    """The data's own coordinates, flattened, as features."""

    fingerprint = f"{RAW_EXTRACTOR}-1"

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0], -1).float()


RAW_FEATURES = FeatureExtractorSpec(name=RAW_EXTRACTOR, build=lambda dataset, device: RawFeatures(),
                                    description="harness.testing: the data's coordinates")
