"""The vocabularies of the contracts: data kinds, likelihood kinds, model capabilities, estimator marks."""

from __future__ import annotations

from enum import Enum


class DataKind(str, Enum):
    CONTINUOUS = "continuous"
    DISCRETE = "discrete"  # integer levels 0..K-1 (``DatasetSpec.levels`` = K)
    BINARY = "binary"  # values in {0, 1}

    def __str__(self) -> str:  # pragma: no cover - cosmetic
        return self.value


class LikelihoodKind(str, Enum):
    EXACT = "exact"  # the model's log-likelihood, computed exactly
    BOUND = "bound"  # a lower bound on log-likelihood (ELBO, IWAE, dequantised density)
    ESTIMATE = "estimate"  # a stochastic estimate (AIS, Parzen window)

    def __str__(self) -> str:  # pragma: no cover - cosmetic
        return self.value


class Capability(str, Enum):
    SAMPLE = "sample"
    CONDITIONAL = "conditional"  # sample(n, labels=...) honours labels
    LOG_LIKELIHOOD = "log_likelihood"

    def __str__(self) -> str:  # pragma: no cover - cosmetic
        return self.value


# Estimator marks used in measurements. The first three are the likelihood kinds.
ESTIMATORS = ("exact", "bound", "estimate", "measured", "statistic")
