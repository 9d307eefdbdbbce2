"""Fidelity metrics ``fid``, ``kid``, ``precision`` and ``recall`` (computed by torch-fidelity) and
``density`` and ``coverage`` (Naeem et al. 2020, computed here), between a model's samples and the
dataset's test split, in the features of the dataset's feature extractor
(``DatasetSpec.feature_extractor``, looked up in ``MetricContext.feature_extractors``).

Semantics
- Sample count: n model samples, n the count the metrics declare per profile
  (:data:`~harness_plugins.metrics.job_samples.SAMPLE_COUNT`: 500 smoke, 2000 quick, 10000 full),
  the job's shared samples (:mod:`harness_plugins.metrics.job_samples`, drawn with
  ``ctx.generator(4242)``) against ``min(n, len(test))`` test examples: ``ctx.evaluation_split(n)``, the examples every metric
  takes (:func:`harness.contracts.evaluation_indices`: the first n of a fixed permutation, so they
  lie within the likelihood metrics' examples whenever ``n <= eval_examples``). The count is part of
  the metric's identity: the outputs declare ``sample_count_in_id``, so a measurement's id is
  ``fid@2000``; details carry ``n_reference``.
- Estimators (all torch-fidelity's functions): FID from the features' means and covariances
  (``fid_features_to_statistics`` / ``fid_statistics_to_metric``); KID, the unbiased MMD^2 with the
  cubic polynomial kernel (``kernel_poly`` / ``mmd2``), averaged over ``KID_SUBSETS`` random subsets
  of size ``min(1000, n // 2, n_reference // 2)``, with the standard deviation over subsets as its
  stderr; precision / recall by k-nearest-neighbour balls (k = ``PRC_NEIGHBORHOOD``), samples as
  input1 (``prc_features_to_metric``). Each equals ``torch_fidelity.calculate_metrics`` on the same
  features (tested). Density and coverage (Naeem, Oh, Uh, Choi & Yoo, "Reliable fidelity and
  diversity metrics for generative models", ICML 2020) with k = ``DC_NEIGHBORHOOD`` = 5 as in the
  paper: r_i is the distance from test example i to its k-th nearest other test example;
  density = (1 / kM) sum_j sum_i 1[|s_j - x_i| < r_i] over the M samples s_j (1 for a model like
  the data, above 1 where samples crowd dense regions), coverage = the share of test examples
  whose ball holds at least one sample. Equal to the ``prdc`` package's on the same features
  (tested).
- Noise floor: the same metric between the training split (``min(n, len(train))`` examples) and the
  same test reference, once per run and dataset; reported in every job's ``details["train_vs_test"]``
  and as rows of their own by :func:`reference_rows`.
- Cost: reference features (test, and train for the noise floor) are computed once per (dataset
  provenance, split, extractor fingerprint, sample count), cached on disk under
  ``ctx.cache_dir/fidelity`` (or only in ``ctx.run_cache`` when there is no cache dir) and stamped
  with their provenance (dataset hash, extractor name, fingerprint and weights hash, sample count,
  the selection rule and a hash of the selected indices, torch and torch-fidelity versions); any stamp
  difference means recompute and overwrite, so a change of which examples form the reference can
  never reuse statistics of the old ones.
  A job's sample features are computed once and shared by its six metrics through ``ctx.run_cache``,
  so M models cost M sample passes plus one test pass (and one train pass for the noise floor) --
  :data:`FEATURE_PASSES` counts them.
- An extractor whose ``check(data_root)`` gives a reason raises :class:`FidelityUnavailable` carrying it.
"""

from __future__ import annotations

import hashlib
import inspect
import math
import os
import re
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from harness import Capability, Measurement, MetricContext, MetricSkipped, MetricSpec, Output, Tolerance, hookimpl
from harness.contracts import EVALUATION_SUBSET_SEED, evaluation_indices
from harness_plugins.metrics.job_samples import SAMPLE_COUNT, job_key, job_samples, sample_count

SUBSET_SEED = EVALUATION_SUBSET_SEED  # the permutation behind every evaluation subset (harness.contracts)
CACHE_FORMAT = 2  # 2: the reference is the evaluation subset, stamped with a hash of its indices
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
METRICS = ("fid", "kid", "precision", "recall", "density", "coverage")

# Feature passes made by this module, by kind: "samples" (one per model job), "reference:test",
# "reference:train" (data splits, once per cache key). Tests check M models cost M + 1 (+ train).
FEATURE_PASSES: Counter = Counter()
# How reference features were obtained: "memory" (run cache), "disk", "stale" (stamp differed), "computed".
CACHE_EVENTS: Counter = Counter()


class FidelityUnavailable(MetricSkipped):
    """The dataset's feature extractor cannot be used here (``reason`` says why and how to fix it).

    A :class:`harness.MetricSkipped`: the runner records the metric as skipped with this reason.
    """

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


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


# ----------------------------------------------------------------------------- the estimators


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


# ----------------------------------------------------------------------------- extractors


def _build_extractor(spec, dataset, device, data_root):
    """``spec.build(dataset, device)``, passing ``data_root`` too where the builder accepts it."""
    params = inspect.signature(spec.build).parameters.values()
    if any(p.name == "data_root" or p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return spec.build(dataset, device, data_root=data_root)
    return spec.build(dataset, device)


def extractor_for(dataset, feature_extractors, device="cpu", data_root=None, run_cache=None):
    """(name, extractor) for ``dataset``: built once per run (``run_cache``) and device.
    Raises :class:`FidelityUnavailable` when the dataset names none, it is not registered, or its
    ``check`` gives a reason."""
    name = dataset.spec.feature_extractor
    if not name:
        raise FidelityUnavailable(f"dataset {dataset.name!r} names no feature extractor")
    spec = feature_extractors.get(name)
    if spec is None:
        raise FidelityUnavailable(f"feature extractor {name!r} (named by dataset {dataset.name!r}) is not "
                                  f"registered; is the plugin that provides it installed and enabled?")
    reason = spec.check(data_root) if spec.check is not None else None
    if reason:
        raise FidelityUnavailable(reason)
    run_cache = {} if run_cache is None else run_cache
    key = ("fidelity:extractor", name, dataset.name, dataset.provenance, str(device))
    if key not in run_cache:
        run_cache[key] = _build_extractor(spec, dataset, torch.device(device), data_root)
    return name, run_cache[key]


# ----------------------------------------------------------------------------- reference features


SELECTION = ("harness.contracts.evaluation_indices: all of the split if it holds no more than n, else the "
             f"first n of randperm(size, seed={EVALUATION_SUBSET_SEED}), sorted")


def split_subset(x: torch.Tensor, n: int) -> torch.Tensor:
    """The ``n`` examples of a split used as reference: all of it if it holds no more than ``n``,
    else the evaluation subset (:func:`harness.contracts.evaluation_indices`, in split order), the
    examples ``MetricContext.evaluation_split(n, split)`` gives every metric."""
    if len(x) <= n:
        return x
    return x[evaluation_indices(len(x), n)]


def _indices_digest(size: int, n: int) -> str:
    idx = evaluation_indices(size, n)
    return hashlib.sha256(idx.to(torch.int64).numpy().tobytes()).hexdigest()


def reference_stamp(dataset, split: str, extractor_name: str, extractor, n: int) -> dict:
    """Everything that determines cached reference features; a cache entry is used only if equal."""
    size = len(getattr(dataset, split))
    return {
        "format": CACHE_FORMAT,
        "dataset": dataset.name,
        "dataset_provenance": dataset.provenance,
        "split": split,
        "extractor": extractor_name,
        "extractor_fingerprint": extractor.fingerprint,
        "weights_sha256": getattr(extractor, "weights_sha256", None) or "",
        "n_requested": int(n),
        "n": min(int(n), size),
        "selection": SELECTION,
        "indices_sha256": _indices_digest(size, int(n)),
        "torch": str(torch.__version__),
        "torch_fidelity": torch_fidelity_version(),
    }


def reference_cache_path(cache_dir, stamp: dict) -> Path:
    stem = "-".join(str(stamp[k]) for k in ("dataset", "split", "extractor")) + f"-n{stamp['n_requested']}"
    return Path(cache_dir) / "fidelity" / (re.sub(r"[^A-Za-z0-9_.-]+", "_", stem) + ".pt")


def _load_cached(path: Path, stamp: dict) -> Optional[FeatureSet]:
    if not path.is_file():
        return None
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # unreadable or half-written: recompute
        CACHE_EVENTS["stale"] += 1
        return None
    if blob.get("stamp") != stamp:
        CACHE_EVENTS["stale"] += 1
        return None
    stats = {"mu": blob["mu"].numpy(), "sigma": blob["sigma"].numpy()}
    return FeatureSet(blob["features"], stats, stamp)


def _save_cached(path: Path, entry: FeatureSet) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    blob = {"stamp": entry.stamp, "features": entry.features,
            "mu": torch.from_numpy(np.ascontiguousarray(entry.stats["mu"])),
            "sigma": torch.from_numpy(np.ascontiguousarray(entry.stats["sigma"]))}
    with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".tmp", delete=False) as tmp:
        torch.save(blob, tmp)
    os.replace(tmp.name, path)  # atomic: parallel jobs never read a half-written file


def reference_features(dataset, split: str, extractor_name: str, extractor, n: int,
                       cache_dir=None, run_cache=None) -> FeatureSet:
    """Features and statistics of ``split_subset(dataset.<split>.x, n)``: from the run cache, else the
    on-disk cache when its stamp matches, else computed (and written to both)."""
    stamp = reference_stamp(dataset, split, extractor_name, extractor, n)
    run_cache = {} if run_cache is None else run_cache
    key = ("fidelity:reference", dataset.name, split, extractor_name, int(n))
    entry = run_cache.get(key)
    if entry is not None and entry.stamp == stamp:
        CACHE_EVENTS["memory"] += 1
        return entry
    path = reference_cache_path(cache_dir, stamp) if cache_dir is not None else None
    entry = _load_cached(path, stamp) if path is not None else None
    if entry is not None:
        CACHE_EVENTS["disk"] += 1
    else:
        x = split_subset(getattr(dataset, split).x, n)
        FEATURE_PASSES[f"reference:{split}"] += 1
        CACHE_EVENTS["computed"] += 1
        entry = feature_set(extractor.features(x), stamp)
        if path is not None:
            _save_cached(path, entry)
    run_cache[key] = entry
    return entry


# ----------------------------------------------------------------------------- model samples


def sample_features(ctx: MetricContext, extractor_name: str, extractor, n: int) -> FeatureSet:
    """The job's sample features: extracted once from the job's shared samples
    (:func:`harness_plugins.metrics.job_samples.job_samples`), then shared by the job's fidelity metrics.

    Only the latest job is kept (``ctx.run_cache["fidelity:samples"]``), keyed by the model job
    (model, dataset and its provenance, seed, n, the model object) and the extractor's fingerprint.
    """
    key = (*job_key(ctx, n), extractor_name, extractor.fingerprint)
    slot = ctx.run_cache.get("fidelity:samples")
    if slot is not None and slot[0] == key:
        return slot[1]
    samples = job_samples(ctx, n)
    FEATURE_PASSES["samples"] += 1
    entry = feature_set(extractor.features(samples))
    ctx.run_cache["fidelity:samples"] = (key, entry)
    return entry


# ----------------------------------------------------------------------------- noise floor


def train_vs_test(dataset, metric: str, extractor_name: str, extractor, n: int, cache_dir=None,
                  run_cache=None) -> dict:
    """The noise floor of ``metric`` at sample count ``n``: the training split against the test
    reference, computed once per run (``run_cache``)."""
    run_cache = {} if run_cache is None else run_cache
    key = ("fidelity:train_vs_test", metric, dataset.name, dataset.provenance, extractor_name,
           extractor.fingerprint, int(n))
    if key not in run_cache:
        reference = reference_features(dataset, "test", extractor_name, extractor, n, cache_dir, run_cache)
        train = reference_features(dataset, "train", extractor_name, extractor, n, cache_dir, run_cache)
        value, stderr, extra = score(metric, train, reference)
        run_cache[key] = {"value": value, "stderr": stderr, "n": train.n, "n_reference": reference.n, **extra}
    return run_cache[key]


# ----------------------------------------------------------------------------- measurements

# The declarations. Each is a sample statistic whose value depends on the sample count (FID is biased
# upwards at small n), so the count is part of its identity (fid@500 is not fid@2000).
# Tolerances (the regression gate's floor): statistics of 500 samples (smoke) are noisy, so FID may
# move by 10% (or 0.01, for values near zero), KID by 25% (or 0.001), precision and recall by 0.05.
OUTPUTS = {
    "fid": Output("fid", "", higher_is_better=False, estimator="statistic", order=60, sample_count_in_id=True,
                  headline=True, tolerance=Tolerance(relative=0.10, absolute=0.01),
                  description="Frechet distance to the test split in the extractor's features"),
    "kid": Output("kid", "", higher_is_better=False, estimator="statistic", order=70, sample_count_in_id=True,
                  tolerance=Tolerance(relative=0.25, absolute=0.001),
                  description="kernel (cubic polynomial) MMD^2 to the test split, mean over subsets"),
    "precision": Output("precision", "fraction", higher_is_better=True, estimator="statistic", order=80,
                        sample_count_in_id=True, headline=True, tolerance=Tolerance(absolute=0.05),
                        description="share of samples inside the k-NN manifold of the test split"),
    "recall": Output("recall", "fraction", higher_is_better=True, estimator="statistic", order=90,
                     sample_count_in_id=True, headline=True, tolerance=Tolerance(absolute=0.05),
                     description="share of test examples inside the k-NN manifold of the samples"),
    # density counts balls per sample and can exceed 1; it moves more than precision between seeds.
    "density": Output("density", "", higher_is_better=True, estimator="statistic", order=85, sample_count_in_id=True,
                      tolerance=Tolerance(absolute=0.1),
                      description="test-split k-NN balls (k=5) holding a sample, per sample, over k: 1 for a "
                                  "model like the data (Naeem et al. 2020)"),
    "coverage": Output("coverage", "fraction", higher_is_better=True, estimator="statistic", order=95,
                       sample_count_in_id=True, tolerance=Tolerance(absolute=0.05),
                       description="share of test examples whose k-NN ball (k=5) holds a sample (Naeem et al. 2020)"),
}
UNITS = {metric: out.unit for metric, out in OUTPUTS.items()}
HIGHER_IS_BETTER = {metric: out.higher_is_better for metric, out in OUTPUTS.items()}


def _measurement(metric, value, stderr, n, details) -> Measurement:
    return Measurement(metric, value, stderr=stderr, n=n, details=details)


def _base_details(metric, n, extractor_name, extractor, reference: FeatureSet) -> dict:
    return {
        "n": int(n),
        "extractor": extractor_name,
        "extractor_fingerprint": extractor.fingerprint[:16],
        "feature_dim": int(reference.features.shape[1]),
        "reference": "test",
        "n_reference": reference.n,
        "torch_fidelity": torch_fidelity_version(),
    }


def compute_metric(metric: str, ctx: MetricContext, n: int) -> list:
    """One fidelity metric for the job in ``ctx`` from ``n`` model samples (with its train-vs-test noise
    floor in details)."""
    name, extractor = extractor_for(ctx.dataset, ctx.feature_extractors, ctx.device, ctx.data_root, ctx.run_cache)
    # the reference is ctx.evaluation_split(n) (split_subset selects it), cached across jobs and runs
    reference = reference_features(ctx.dataset, "test", name, extractor, n, ctx.cache_dir, ctx.run_cache)
    generated = sample_features(ctx, name, extractor, n)
    value, stderr, extra = score(metric, generated, reference)
    floor = train_vs_test(ctx.dataset, metric, name, extractor, n, ctx.cache_dir, ctx.run_cache)
    details = _base_details(metric, n, name, extractor, reference)
    details.update(extra)
    details.update({"train_vs_test": floor["value"], "train_vs_test_n": floor["n"]})
    if floor["stderr"] is not None:
        details["train_vs_test_stderr"] = floor["stderr"]
    return [_measurement(metric, value, stderr, n, details)]


def reference_rows(dataset, n: int, feature_extractors, device="cpu", cache_dir=None, run_cache=None,
                   data_root=None, metrics=METRICS) -> list:
    """The noise-floor rows of a dataset at sample count ``n``: each metric between the training split
    (``min(n, len(train))`` examples) and the test reference, as measurements with
    ``details["reference"] = "train_vs_test"``, bound to their declarations (``id`` = ``fid@n``).
    Shares caches with the per-job metrics."""
    run_cache = {} if run_cache is None else run_cache
    name, extractor = extractor_for(dataset, feature_extractors, device, data_root, run_cache)
    reference = reference_features(dataset, "test", name, extractor, n, cache_dir, run_cache)
    rows = []
    for metric in metrics:
        floor = train_vs_test(dataset, metric, name, extractor, n, cache_dir, run_cache)
        details = _base_details(metric, n, name, extractor, reference)
        details.update({k: v for k, v in floor.items() if k not in ("value", "stderr", "n", "n_reference")})
        details.update({"reference": "train_vs_test", "n_train": floor["n"]})
        rows.append(metric_spec(metric).bind(_measurement(metric, floor["value"], floor["stderr"], n, details)))
    return rows


def _not_applicable(model_spec, dataset_spec) -> Optional[str]:
    if not dataset_spec.feature_extractor:
        return f"dataset {dataset_spec.name} names no feature extractor"
    return None


def _compute(metric: str):
    def compute(ctx: MetricContext) -> list:
        return compute_metric(metric, ctx, sample_count(ctx))

    compute.__name__ = f"compute_{metric}"
    return compute


DESCRIPTIONS = {
    "fid": "Frechet distance between model samples and the test split in the dataset's extractor features "
           "(torch-fidelity); n samples in the metric's identity.",
    "kid": "Kernel (cubic polynomial) MMD^2 between model samples and the test split (torch-fidelity), mean "
           "over subsets; stderr = standard deviation over subsets.",
    "precision": "Fraction of model samples inside the k-NN (k=3) manifold of the test split (torch-fidelity).",
    "recall": "Fraction of test examples inside the k-NN (k=3) manifold of the model samples (torch-fidelity).",
    "density": "How many test examples' k-NN balls (k=5) hold each model sample, over k; 1 for samples like the "
               "data (Naeem et al. 2020).",
    "coverage": "Fraction of test examples whose k-NN ball (k=5) holds at least one model sample (Naeem et al. 2020).",
}


def metric_spec(metric: str) -> MetricSpec:
    """The MetricSpec of one fidelity metric (one output of the same name)."""
    return MetricSpec(name=metric, compute=_compute(metric), outputs=[OUTPUTS[metric]], requires=[Capability.SAMPLE],
                      applies=_not_applicable, description=DESCRIPTIONS[metric], sizes=SAMPLE_COUNT)


@hookimpl
def harness_register_metrics(register):
    for metric in METRICS:
        register(metric_spec(metric))
