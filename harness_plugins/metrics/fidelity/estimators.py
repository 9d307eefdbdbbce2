"""The fidelity statistics of two feature sets: FID, KID, precision/recall, density/coverage.
FID, KID and precision/recall are torch-fidelity's functions; density and coverage (Naeem et al.
2020) are computed here.

Each takes a generated and a reference :class:`FeatureSet` (features and their FID statistics) and
equals torch-fidelity's ``calculate_metrics`` (or the ``prdc`` package, for density and coverage) on
the same features; results computed together (precision and recall, density and coverage) are
computed once per pair of feature sets.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import torch

KID_SUBSETS = 50  # torch-fidelity defaults to 100; 50 halves the cost on a CPU, the spread is still reported
KID_MAX_SUBSET = 1000
KID_RNG_SEED = 2020  # torch-fidelity's default seed for drawing KID subsets
# Features of at most this many explicit kernel features (1 + d + d^2 + d^3: d <= 9 for the cubic kernel)
# take the feature-map path of kernel_inception_distance: float64 features only, so it agrees with
# torch-fidelity to rounding (about 1e-12 relative on the toys), not to float32's 1e-7.
KID_FEATURE_MAP_MAX = 1000
PRC_NEIGHBORHOOD = 3
PRC_BATCH = 2000
DC_NEIGHBORHOOD = 5  # k for density and coverage, as recommended by Naeem et al. (2020)
DC_CHUNK_ENTRIES = 4_000_000  # distance-matrix entries per chunk for density and coverage


@dataclass
class FeatureSet:
    """Features (N, F) on the CPU and torch-fidelity's FID statistics of them."""

    features: torch.Tensor
    stats: dict  # {"mu": ndarray (F,), "sigma": ndarray (F, F)}
    stamp: dict
    # precision/recall against a reference, computed together once: id(reference) -> (reference, result)
    prc_memo: dict = field(default_factory=dict, repr=False)
    # density/coverage against a reference, likewise; and this set's k-NN radii as a reference, by k
    dc_memo: dict = field(default_factory=dict, repr=False)
    radii: dict = field(default_factory=dict, repr=False)

    @property
    def n(self) -> int:
        return int(self.features.shape[0])


def torch_fidelity_version() -> str:
    import torch_fidelity

    return torch_fidelity.__version__


def feature_set(features: torch.Tensor, stamp: Optional[dict] = None) -> FeatureSet:
    from torch_fidelity.metric_fid import fid_features_to_statistics

    features = features.detach().cpu()
    if features.dim() != 2 or features.shape[0] < 2:
        raise ValueError(f"fidelity metrics need features of shape (N >= 2, F), got {tuple(features.shape)}")
    return FeatureSet(features, fid_features_to_statistics(features), dict(stamp or {}))


def kid_subset_size(n1: int, n2: int) -> int:
    return max(2, min(KID_MAX_SUBSET, n1 // 2, n2 // 2))


def torch_fidelity_options(n1: int, n2: int) -> dict:
    """The torch-fidelity keyword arguments behind every number here (for ``calculate_metrics`` too)."""
    return {
        "kid_subsets": KID_SUBSETS,
        "kid_subset_size": kid_subset_size(n1, n2),
        "rng_seed": KID_RNG_SEED,
        "prc_neighborhood": PRC_NEIGHBORHOOD,
        "prc_batch_size": PRC_BATCH,
        "save_cpu_ram": True,
        "verbose": False,
    }


def frechet_distance(stats_1: dict, stats_2: dict) -> float:
    """torch-fidelity's FID of two statistics ({"mu", "sigma"}). It takes the trace of the matrix
    square root from the eigenvalues of ``sigma1 @ sigma2``, so singular covariances (identical
    samples, constant features) need no added epsilon and still give a finite value."""
    from torch_fidelity.metric_fid import KEY_METRIC_FID, fid_statistics_to_metric

    return fid_statistics_to_metric(stats_1, stats_2, verbose=False)[KEY_METRIC_FID]


def kernel_inception_distance(features_1: torch.Tensor, features_2: torch.Tensor, options: dict) -> tuple[float, float]:
    """torch-fidelity's KID (``kid_features_to_metric``): the same subsets (the same RNG draws), the
    same kernel (``kernel_poly``: (gamma x.y + coef0)^degree) and the same unbiased estimator
    (``mmd2``), computed faster. Low-dimensional features (2-D toys: raw coordinates) go through the
    kernel's explicit feature map (:func:`poly_feature_map`), in which a subset's kernel sums are inner
    products of summed feature vectors; others read every subset's kernel matrices from matrices
    computed once on the full sets, instead of recomputing kernel values for each of the
    ``kid_subsets`` subsets (about 10x faster on a CPU at subset size 1000).
    Returns (mean, standard deviation) over subsets."""
    from torch_fidelity.helpers import get_kwarg
    from torch_fidelity.metric_kid import kernel_poly, mmd2

    x, y = features_1.cpu().numpy(), features_2.cpu().numpy()
    size = options["kid_subset_size"]
    rng = np.random.RandomState(options["rng_seed"])
    mmds = np.zeros(options["kid_subsets"])
    degree, gamma, coef0 = (get_kwarg(f"kid_kernel_poly_{k}", options) for k in ("degree", "gamma", "coef0"))
    gamma = 1.0 / x.shape[1] if gamma is None else gamma
    if x.dtype == np.float64 and y.dtype == np.float64 and poly_feature_dim(x.shape[1], degree) <= KID_FEATURE_MAP_MAX:
        phi_x, phi_y = poly_feature_map(x, degree, gamma, coef0), poly_feature_map(y, degree, gamma, coef0)
        diag_x, diag_y = (gamma * (x * x).sum(1) + coef0) ** degree, (gamma * (y * y).sum(1) + coef0) ** degree
        for i in range(len(mmds)):
            a = rng.choice(len(x), size, replace=False)
            b = rng.choice(len(y), size, replace=False)
            sx, sy = phi_x[a].sum(0), phi_y[b].sum(0)
            off_xx, off_yy = sx @ sx - diag_x[a].sum(), sy @ sy - diag_y[b].sum()  # sums without the diagonal
            mmds[i] = (off_xx + off_yy) / (size * (size - 1)) - 2 * (sx @ sy) / (size * size)
        return float(np.mean(mmds)), float(np.std(mmds))
    k_xx, k_xy, k_yy = kernel_poly(x, x, **options), kernel_poly(x, y, **options), kernel_poly(y, y, **options)
    for i in range(len(mmds)):
        a = rng.choice(len(x), size, replace=False)
        b = rng.choice(len(y), size, replace=False)
        mmds[i] = mmd2(k_xx[a][:, a], k_xy[a][:, b], k_yy[b][:, b])  # rows, then columns: faster than np.ix_
    return float(np.mean(mmds)), float(np.std(mmds))


def poly_feature_dim(dim: int, degree: int) -> int:
    """Length of :func:`poly_feature_map`'s vectors: 1 + d + d^2 + ... + d^degree."""
    return sum(dim ** k for k in range(int(degree) + 1))


def poly_feature_map(x: np.ndarray, degree: int, gamma: float, coef0: float) -> np.ndarray:
    """phi with phi(x) . phi(y) = (gamma x.y + coef0)^degree: by the binomial theorem the kernel is
    sum_k C(degree, k) gamma^k coef0^(degree-k) (x.y)^k, and (x.y)^k is the inner product of the k-fold
    tensor powers of x and y; phi stacks those powers, each scaled by the square root of its weight."""
    n, parts, power = x.shape[0], [], np.ones((x.shape[0], 1), dtype=x.dtype)
    for k in range(int(degree) + 1):
        if k:
            power = (power[:, :, None] * x[:, None, :]).reshape(n, -1)
        parts.append(np.sqrt(math.comb(int(degree), k) * gamma ** k * coef0 ** (int(degree) - k)) * power)
    return np.concatenate(parts, axis=1)


def precision_recall(generated: FeatureSet, reference: FeatureSet, options: dict) -> dict:
    """torch-fidelity's precision and recall (computed together, once per pair of feature sets)."""
    from torch_fidelity.metric_prc import prc_features_to_metric

    memo = generated.prc_memo.get(id(reference))
    if memo is None or memo[0] is not reference:
        memo = (reference, prc_features_to_metric(generated.features, reference.features, **options))
        generated.prc_memo[id(reference)] = memo
    return memo[1]


def _row_chunks(rows: int, columns: int):
    step = max(1, DC_CHUNK_ENTRIES // max(1, columns))
    return range(0, rows, step), step


def _squared_distances(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """|a_i - b_j|^2 (float64) by the expansion |a|^2 + |b|^2 - 2 a.b, as scikit-learn's euclidean
    distances (and so prdc) compute them."""
    return ((a * a).sum(1)[:, None] + (b * b).sum(1)[None] - 2 * a @ b.T).clamp_min(0)


def knn_radii(reference: FeatureSet, k: int = DC_NEIGHBORHOOD) -> torch.Tensor:
    """Distance (float64) from each reference example to its k-th nearest other reference example
    (the (k+1)-th smallest distance, the example itself being the first), computed once per set."""
    if k not in reference.radii:
        x = reference.features.double()
        if x.shape[0] <= k:
            raise ValueError(f"density and coverage need more than k = {k} reference examples, got {x.shape[0]}")
        starts, step = _row_chunks(x.shape[0], x.shape[0])
        squared = [_squared_distances(x[i:i + step], x).topk(k + 1, dim=1, largest=False).values[:, -1]
                   for i in starts]
        reference.radii[k] = torch.cat(squared).sqrt()
    return reference.radii[k]


def density_coverage(generated: FeatureSet, reference: FeatureSet, k: int = DC_NEIGHBORHOOD) -> dict:
    """Naeem et al.'s density and coverage of ``generated`` against ``reference`` (computed together,
    once per pair of feature sets): balls of radius r_i (:func:`knn_radii`) around the reference
    examples; density = the number of (sample, ball) pairs with the sample strictly inside, over k M;
    coverage = the share of balls holding a sample."""
    memo = generated.dc_memo.get((id(reference), k))
    if memo is not None and memo[0] is reference:
        return memo[1]
    radii_sq = knn_radii(reference, k) ** 2
    real, fake = reference.features.double(), generated.features.double()
    inside, covered = 0, 0
    starts, step = _row_chunks(real.shape[0], fake.shape[0])
    for i in starts:
        hits = _squared_distances(real[i:i + step], fake) < radii_sq[i:i + step, None]  # (chunk, M)
        inside += int(hits.sum())
        covered += int(hits.any(1).sum())
    result = {"density": inside / (k * fake.shape[0]), "coverage": covered / real.shape[0]}
    generated.dc_memo[(id(reference), k)] = (reference, result)
    return result


def score(metric: str, generated: FeatureSet, reference: FeatureSet) -> tuple[float, Optional[float], dict]:
    """(value, stderr, details) of ``metric`` between generated (input1) and reference (input2) features."""
    options = torch_fidelity_options(generated.n, reference.n)
    if metric == "fid":
        return frechet_distance(generated.stats, reference.stats), None, {}
    if metric == "kid":
        mean, std = kernel_inception_distance(generated.features, reference.features, options)
        return mean, std, {"kid_subsets": options["kid_subsets"], "kid_subset_size": options["kid_subset_size"],
                           "stderr_kind": "standard deviation over subsets"}
    if metric in ("precision", "recall"):
        return precision_recall(generated, reference, options)[metric], None, {
            "neighborhood": options["prc_neighborhood"]}
    if metric in ("density", "coverage"):
        return density_coverage(generated, reference)[metric], None, {"neighborhood": DC_NEIGHBORHOOD}
    raise ValueError(f"unknown fidelity metric {metric!r}")
