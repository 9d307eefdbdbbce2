"""The kit's tiny datasets: one family per data kind, small enough to fit a model in a moment and to
check a density exactly.

Every set has two classes (labels 0 and 1, drawn with probability 1/2 each) whose distributions
differ clearly, so a conditional model's use of its labels can be seen, and a known true distribution:

``continuous``  a (2,) vector or a (1, 2, 2) image: class c is N(mu_c, Sigma), mu_1 = -mu_0, the means
                3 apart along the first axis (see :data:`MEANS`, :data:`COVARIANCE`). Its log-density
                is the mixture's (closed form). The entropy of the vector set is computed by the 2-D
                midpoint rule (:func:`grid_entropy`), with the difference from the rule at twice the
                spacing as its error; that of the image set by Monte Carlo (200,000 draws, fixed
                seed), with its standard error.
``binary``      4 units, as a (1, 2, 2) image or a (4,) vector: independent Bernoulli units per
                class, mostly off for class 0 and mostly on for class 1 (16 states).
``discrete``    4 units with 3 levels, image or vector: independent categoricals per class, leaning
                to level 0 for class 0 and level 2 for class 1 (81 states).

For the discrete and binary sets ``log_density`` is the exact log-probability of a state and
``entropy`` the exact Shannon entropy (sums over every state). Each set exists in the shapes a model
may need (images for convolutional models, vectors for the others); :func:`tiny_datasets` lists them,
preferred shape first. All carry the tag :data:`TAG`, so a model's hyperparameter rules can select
them (``({"tag": "conformance"}, {"steps": 50})``), and the feature extractor :data:`RAW_EXTRACTOR`
of :mod:`harness.testing.reference`.
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch

from harness.contracts import DataKind, DatasetSpec, Split, Splits
from harness.testing.density import states

TAG = "conformance"
RAW_EXTRACTOR = "conformance-raw"
SPLIT_SIZES = {"train": 1000, "val": 200, "test": 500}
SPLIT_SEEDS = {"train": 11, "val": 12, "test": 13}
CLASSES = 2

# Class means and covariance of the continuous sets; the (2,) vector set uses the first two dimensions.
MEANS = torch.tensor([[-1.5, -0.5, -1.0, 0.5], [1.5, 0.5, 1.0, -0.5]], dtype=torch.float64)
COVARIANCE = torch.tensor([[0.30, 0.10, 0.05, 0.00],
                           [0.10, 0.20, 0.00, 0.05],
                           [0.05, 0.00, 0.25, 0.10],
                           [0.00, 0.05, 0.10, 0.30]], dtype=torch.float64)
# P(unit on | class) for the binary set; P(level | class) per unit for the discrete set (3 levels).
BINARY_ON = torch.tensor([[0.10, 0.20, 0.15, 0.25], [0.85, 0.75, 0.90, 0.80]], dtype=torch.float64)
DISCRETE_LEVELS = 3
DISCRETE_PROBS = torch.tensor([
    [[0.70, 0.20, 0.10], [0.60, 0.30, 0.10], [0.65, 0.25, 0.10], [0.55, 0.30, 0.15]],
    [[0.10, 0.20, 0.70], [0.10, 0.30, 0.60], [0.15, 0.25, 0.60], [0.10, 0.35, 0.55]],
], dtype=torch.float64)
UNITS = 4


# ----------------------------------------------------------------------------- continuous


def _gaussian(dim: int) -> tuple:
    return MEANS[:, :dim], COVARIANCE[:dim, :dim]


def continuous_log_density(x: torch.Tensor) -> torch.Tensor:
    """log p(x) of the two-component mixture in x's dimension (2 or 4), float64, shape (N,)."""
    x = x.reshape(x.shape[0], -1).double()
    means, cov = _gaussian(x.shape[1])
    log_norm = -0.5 * torch.logdet(2 * math.pi * cov)
    diff = x[:, None, :] - means[None]  # (N, classes, D)
    quad = torch.einsum("nci,ij,ncj->nc", diff, torch.linalg.inv(cov), diff)
    return torch.logsumexp(math.log(1 / CLASSES) + log_norm - 0.5 * quad, dim=1)


def _continuous_sample(n: int, dim: int, gen: torch.Generator):
    means, cov = _gaussian(dim)
    y = torch.randint(0, CLASSES, (n,), generator=gen)
    z = torch.randn(n, dim, generator=gen, dtype=torch.float64)
    return means[y] + z @ torch.linalg.cholesky(cov).T, y


def grid_entropy(log_density, lo, hi, size: int) -> float:
    """-int p log p over the box [lo, hi] (per axis, 2-D) by the midpoint rule with ``size`` cells per axis."""
    h = [(hi[i] - lo[i]) / size for i in range(2)]
    axes = [lo[i] + h[i] * (torch.arange(size, dtype=torch.float64) + 0.5) for i in range(2)]
    xx, yy = torch.meshgrid(axes[0], axes[1], indexing="ij")
    lp = log_density(torch.stack([xx.reshape(-1), yy.reshape(-1)], 1))
    return float(-(torch.exp(lp) * lp).sum() * h[0] * h[1])


ENTROPY_MC_DRAWS = 200_000


@lru_cache(maxsize=None)
def continuous_entropy(dim: int) -> tuple:
    """(entropy, error) of the continuous set in ``dim`` dimensions. 2-D: the midpoint rule on a box
    8 standard deviations past both means, the error its difference from the rule at twice the
    spacing. 4-D: Monte Carlo over ENTROPY_MC_DRAWS draws (fixed seed), the error its standard error."""
    if dim == 2:
        means, cov = _gaussian(2)
        sd = float(cov.diagonal().sqrt().max())
        lo = [float(means[:, i].min()) - 8 * sd for i in range(2)]
        hi = [float(means[:, i].max()) + 8 * sd for i in range(2)]
        fine = grid_entropy(continuous_log_density, lo, hi, 400)
        coarse = grid_entropy(continuous_log_density, lo, hi, 200)
        return fine, abs(fine - coarse)
    x, _ = _continuous_sample(ENTROPY_MC_DRAWS, dim, torch.Generator().manual_seed(99))
    lp = continuous_log_density(x)
    return float(-lp.mean()), float(lp.std() / math.sqrt(len(lp)))


# ----------------------------------------------------------------------------- discrete and binary


def _unit_probs(kind: DataKind) -> torch.Tensor:
    """(classes, units, levels) probabilities of each level of each unit given the class."""
    if kind is DataKind.BINARY:
        return torch.stack([1 - BINARY_ON, BINARY_ON], dim=-1)
    return DISCRETE_PROBS


def _levels(kind: DataKind) -> int:
    return 2 if kind is DataKind.BINARY else DISCRETE_LEVELS


def discrete_log_density(kind: DataKind):
    probs = _unit_probs(kind)

    def log_density(x: torch.Tensor) -> torch.Tensor:
        """log P(x), float64, shape (N,): the class mixture of independent units."""
        v = x.reshape(x.shape[0], -1).long()
        per_class = torch.stack([torch.log(probs[c][torch.arange(UNITS), v]).sum(1) for c in range(CLASSES)], 1)
        return torch.logsumexp(per_class + math.log(1 / CLASSES), dim=1)

    return log_density


def discrete_entropy(kind: DataKind) -> float:
    lp = discrete_log_density(kind)(states(_levels(kind), UNITS))
    return float(-(torch.exp(lp) * lp).sum())


def _discrete_sample(kind: DataKind, n: int, gen: torch.Generator):
    probs = _unit_probs(kind)
    y = torch.randint(0, CLASSES, (n,), generator=gen)
    flat = probs[y].reshape(n * UNITS, -1)
    x = torch.multinomial(flat, 1, generator=gen).reshape(n, UNITS)
    return x.double(), y


# ----------------------------------------------------------------------------- the specs


def _loader(kind: DataKind, shape: tuple):
    def load(root=None) -> Splits:
        parts = {}
        for split, n in SPLIT_SIZES.items():
            gen = torch.Generator().manual_seed(SPLIT_SEEDS[split])
            if kind is DataKind.CONTINUOUS:
                x, y = _continuous_sample(n, math.prod(shape), gen)
            else:
                x, y = _discrete_sample(kind, n, gen)
            parts[split] = Split(x.float().reshape(n, *shape), y.long())
        return Splits(**parts)

    return load


SHAPES = {
    DataKind.CONTINUOUS: [(2,), (1, 2, 2)],
    DataKind.BINARY: [(1, 2, 2), (UNITS,)],
    DataKind.DISCRETE: [(1, 2, 2), (UNITS,)],
}


def tiny_dataset(kind, shape: tuple) -> DatasetSpec:
    """The kit's dataset of ``kind`` in ``shape`` (one of :data:`SHAPES`)."""
    kind = DataKind(kind)
    shape = tuple(shape)
    if shape not in SHAPES[kind]:
        raise ValueError(f"no tiny {kind.value} dataset of shape {shape}; shapes: {SHAPES[kind]}")
    form = "image" if len(shape) == 3 else "vector"
    name = f"{TAG}-{kind.value}-{form}"
    if kind is DataKind.CONTINUOUS:
        entropy, error = continuous_entropy(math.prod(shape))
        log_density, levels = continuous_log_density, None
        what = "two correlated Gaussians, one per class"
    else:
        entropy, error = discrete_entropy(kind), 0.0
        log_density, levels = discrete_log_density(kind), _levels(kind)
        what = f"{UNITS} independent units per class, {levels} levels"
    return DatasetSpec(
        name=name, kind=kind, event_shape=shape, load=_loader(kind, shape), num_classes=CLASSES, levels=levels,
        log_density=log_density, entropy=entropy, entropy_stderr=error, feature_extractor=RAW_EXTRACTOR,
        tags=(TAG, form), description=f"harness.testing: {what} ({'x'.join(map(str, shape))})",
    )


def tiny_datasets(kind) -> list:
    """The kit's datasets of ``kind``, preferred shape first."""
    kind = DataKind(kind)
    return [tiny_dataset(kind, shape) for shape in SHAPES[kind]]
