"""The vocabularies of the contracts: data kinds, likelihood kinds, model capabilities, estimator marks,
and what an output declares about its number (role, scaling with machine speed)."""

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


class Role(str, Enum):
    """What a measurement is, as far as the core needs to know (:class:`harness.Output` ``role``)."""

    LIKELIHOOD = "likelihood"  # a negative log-likelihood per example in nats, lower is better: it can be
    #                            set against the dataset's entropy and compared per example between models
    SAMPLE_QUALITY = "sample_quality"  # a statistic of the model's samples (FID, precision, coverage, ...)
    MEMORISATION = "memorisation"  # how close the samples lie to the training split against held-out data
    #                                (copy tests): a copier scores well on sample quality and badly here
    SPEED = "speed"  # how fast or how large the model is (timings, rates, memory, FLOPs)
    OTHER = "other"  # any other quality number

    def __str__(self) -> str:  # pragma: no cover - cosmetic
        return self.value


class Scaling(str, Enum):
    """How a speed figure scales with the speed of the machine that measured it (:class:`harness.Output`
    ``scaling``): what the regression gate does with it across machines."""

    RATE = "rate"  # per unit of time (samples/s): divided by the machine speed factor
    DURATION = "duration"  # a time (ms): multiplied by the machine speed factor
    NONE = "none"  # does not depend on the machine's speed (bytes, FLOP counts, fractions, quality numbers)

    def __str__(self) -> str:  # pragma: no cover - cosmetic
        return self.value


class Highlight(str, Enum):
    """Which cell of a column the report's tables highlight (:class:`harness.Output` ``highlight``)."""

    BEST = "best"  # the best by the declared direction, and the cells tied with it
    WORST = "worst"  # the worst by the declared direction, and the cells tied with it: for a measurement
    #                  that warns (a copy test), the model that most deserves a look

    def __str__(self) -> str:  # pragma: no cover - cosmetic
        return self.value


class Judge(str, Enum):
    """How a comparison of two result sets (``compare``, ``report A B``) judges a quality row
    (:class:`harness.Output` ``judge``)."""

    DIRECTION = "direction"  # worse or better by the declared direction, beyond the floor and the noise
    BEYOND_REFERENCE = "beyond-reference"  # one-sided about a reference level each measurement carries in its
    #                                        details (REFERENCE_LEVEL): worse only when it ends past that level
    #                                        the worse way; a move between two values on the level's good side
    #                                        is no change (docs/regression.md)

    def __str__(self) -> str:  # pragma: no cover - cosmetic
        return self.value
