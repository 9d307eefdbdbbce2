"""Metrics computed from a model's samples alone: parzen_nll, mode_coverage, conditional_accuracy.

Metrics computed from a model's samples: ``parzen_nll``, ``mode_coverage`` and
``conditional_accuracy``.

``parzen_nll`` — the Gaussian Parzen-window (kernel density) log-likelihood of the test split under
n model samples (n: the sample count of :mod:`~harness_plugins.metrics.job_samples`), the estimate used for GANs since Goodfellow
et al. (2014): p(x) ~ (1/n) sum_j N(x; s_j, sigma^2 I). The bandwidth sigma is chosen on a
log-spaced grid (relative to the data's scale) by maximising the mean log-likelihood of the
validation split (its evaluation subset, ``ctx.evaluation_split(n, "val")`` with n = the profile's
``eval_examples``, at most 2,000); the NLL of the test examples every metric uses
(``ctx.evaluation_split()``) is reported with stderr std/sqrt(N) over them and details
{"sigma", "samples"}. This is a weak and biased estimator (Theis, van den Oord & Bethge, "A note on
the evaluation of generative models", ICLR 2016): in more than a few dimensions it is far from the
true log-likelihood even with many samples, and it can rank models wrongly. It is therefore reported
only for models that declare no likelihood of their own (GANs); models with an exact or bounded
likelihood have ``nll``. Discrete data (binary: K = 2) is handled in the dequantised space
y = (x + u) / K, u ~ U[0,1)^D, for samples and test points alike, and D ln K is subtracted, exactly
as for the dequantisation bound of continuous models; details then say {"dequantized": True}.
Distances are computed in chunks (float64, logsumexp), so memory stays O(chunk x n).

``mode_coverage`` — for datasets with a known number K of well-separated modes: a dataset named
``8gaussians`` (K = 8) or tagged ``"modes:K"``. The modes are found from the training split (KMeans
with K clusters, scikit-learn, fixed random_state) and each mode's standard deviation from its
within-cluster spread, sqrt(mean squared distance to the centre / D). Following the convention of
Metz et al. (2017, unrolled GANs) and Srivastava et al. (2017, VEEGAN), a sample is *high quality*
when it lies within 3 standard deviations of its nearest mode. A mode is *covered* when it receives
at least 1% of the high-quality samples (a share, not "at least one sample", so the count does not
grow with the sample count through stray samples). Two measurements: ``modes_covered`` (count, of K)
and ``high_quality_share`` (fraction of all samples, stderr sqrt(p(1-p)/n)). For the true 8gaussians
the share is 1 - exp(-4.5) = 0.989 (the 3-sigma disc of a 2-D Gaussian).

``conditional_accuracy`` — for models with the ``conditional`` capability on labelled data: draw
n / C samples (n: the same sample count) for each of the C classes, classify them and report the fraction
assigned the asked class (stderr sqrt(p(1-p)/n)). The classifier is the dataset's feature extractor
(``DatasetSpec.feature_extractor``) when it is registered, usable, and has ``classify``; otherwise a
scikit-learn logistic regression trained on the training split (also when building the extractor
fails; the reason is then in details). Either is cached for the run and named in details with its
own accuracy on the evaluation examples of the test split (the ceiling for a perfect conditional
sampler).
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np
import torch

from harness import Capability, DataKind, Measurement, MetricContext, MetricSpec, Output, Role, Tolerance, hookimpl
from harness.data import dequantize
from harness_plugins.metrics.job_samples import SAMPLE_COUNT, counted

# ----------------------------------------------------------------------------- declarations
#
# Tolerances (the regression gate's floor). parzen_nll is a likelihood in nats: like nll, 2% or
# 0.05 nats (seed noise of the smoke models is a few hundredths of a nat). The counts and fractions
# below keep the gate's general default, 5% relative: for modes_covered that makes the loss of a
# single mode (1 of 8 is 12.5%) a regression; for high_quality_share and conditional_accuracy (near
# 1 for a good model) it is about 0.05 absolute.
FRACTION_TOLERANCE = Tolerance(relative=0.05)
PARZEN_OUTPUT = Output(
    "parzen_nll", "nats", higher_is_better=False, estimator="estimate", role=Role.LIKELIHOOD, order=50,
    tolerance=Tolerance(relative=0.02, absolute=0.05),
    protocol=("split", "examples", "subset_seed", "samples", "bandwidth_examples", "dequantisation"),
    description="Gaussian Parzen-window NLL of the test split from model samples; weak, biased estimate")
MODE_PROTOCOL = ("samples", "modes", "high_quality_stds", "covered_share")
MODE_OUTPUTS = (
    Output("modes_covered", "modes", higher_is_better=True, estimator="statistic", order=110, integer=True,
           tolerance=FRACTION_TOLERANCE, protocol=MODE_PROTOCOL,
           description="modes receiving at least 1% of the high-quality samples"),
    Output("high_quality_share", "fraction", higher_is_better=True, estimator="statistic", order=120,
           tolerance=FRACTION_TOLERANCE, protocol=MODE_PROTOCOL,
           description="share of samples within 3 sd of their nearest mode"),
)
CONDITIONAL_OUTPUT = Output(
    "conditional_accuracy", "fraction", higher_is_better=True, estimator="statistic", order=130,
    tolerance=FRACTION_TOLERANCE, protocol=("classifier", "classifier_fingerprint", "samples_per_class"),
    description="share of class-conditional samples a classifier assigns to the asked class")

# ----------------------------------------------------------------------------- Parzen window

# Bandwidths tried, relative to the data's scale (root mean per-dimension variance of the
# validation points): a coarse grid 10^-3 .. 10^1 in steps of 10^0.25, then a fine one in steps of
# 10^0.025 across the two coarse cells around the best coarse value.
PARZEN_RELATIVE_GRID = np.logspace(-3, 1, 17)
PARZEN_REFINE = np.logspace(-0.25, 0.25, 21)
PARZEN_MAX_VAL = 2000  # validation points used to choose sigma
CHUNK_ENTRIES = 2_000_000  # distance-matrix entries per chunk


def parzen_log_density(samples: torch.Tensor, x: torch.Tensor, sigmas) -> torch.Tensor:
    """log (1/n) sum_j N(x_i; s_j, sigma^2 I) for every x_i and every sigma: shape (m, len(sigmas)).

    ``samples`` (n, D) and ``x`` (m, D), any float dtype (computed in float64, in chunks of x).
    """
    s = samples.reshape(samples.shape[0], -1).double()
    x = x.reshape(x.shape[0], -1).double()
    sig = torch.as_tensor(np.atleast_1d(np.asarray(sigmas, dtype=np.float64)))
    n, d = s.shape
    s_sq = (s * s).sum(1)
    norm = -math.log(n) - 0.5 * d * torch.log(2 * math.pi * sig**2)  # (S,)
    chunk = max(1, CHUNK_ENTRIES // max(n, 1))
    out = []
    for start in range(0, x.shape[0], chunk):
        xc = x[start:start + chunk]
        d2 = ((xc * xc).sum(1)[:, None] - 2 * xc @ s.T + s_sq[None]).clamp_min(0)  # (c, n)
        per_sigma = [torch.logsumexp(-d2 / (2 * float(v) ** 2), 1) for v in sig]
        out.append(torch.stack(per_sigma, 1) + norm[None])
    return torch.cat(out) if out else torch.zeros(0, len(sig), dtype=torch.float64)


def select_bandwidth(samples: torch.Tensor, val: torch.Tensor, grid, refine=PARZEN_REFINE) -> tuple[float, bool]:
    """The sigma maximising the mean validation log-density: the best of ``grid``, refined by the
    factors ``refine`` around it. Returns (sigma, whether it lies at the edge of ``grid``)."""
    grid = np.asarray(grid, dtype=np.float64)
    best = int(np.argmax(parzen_log_density(samples, val, grid).mean(0).numpy()))
    fine = grid[best] * np.asarray(refine, dtype=np.float64)
    fine = fine[(fine >= grid[0]) & (fine <= grid[-1])]
    sigma = float(fine[int(np.argmax(parzen_log_density(samples, val, fine).mean(0).numpy()))])
    return sigma, best in (0, len(grid) - 1)


def parzen_nll(ctx: MetricContext, n: int) -> list:
    """The Parzen-window NLL of the evaluation examples under ``n`` model samples."""
    spec = ctx.dataset.spec
    samples = ctx.model.sample(n, ctx.generator(101)).reshape(n, -1).double()
    val_limit = min(ctx.profile.eval_examples or PARZEN_MAX_VAL, PARZEN_MAX_VAL)
    val = ctx.evaluation_split(val_limit, split="val").x.reshape(-1, spec.dim).double()
    test = ctx.evaluation_split().x.reshape(-1, spec.dim).double()
    dequantized = spec.kind is not DataKind.CONTINUOUS
    shift = 0.0
    if dequantized:
        k = int(spec.levels)
        samples = dequantize(samples, k, ctx.generator(102)).double()
        val = dequantize(val, k, ctx.generator(103)).double()
        test = dequantize(test, k, ctx.generator(104)).double()
        shift = spec.dim * math.log(k)  # density on [0,1)^D -> probability of the levels
    if not torch.isfinite(samples).all():
        raise ValueError("the model produced non-finite samples")
    scale = float(val.var(0, unbiased=False).mean().sqrt().clamp_min(1e-12))
    grid = scale * PARZEN_RELATIVE_GRID
    sigma, at_edge = select_bandwidth(samples, val, grid)
    log_p = parzen_log_density(samples, test, [sigma])[:, 0] - shift
    nll = -log_p
    stderr = float(nll.std(unbiased=True) / math.sqrt(len(nll))) if len(nll) > 1 else float("nan")
    details = {
        "sigma": sigma,
        "samples": n,
        "val_examples": int(val.shape[0]),
        "sigma_at_grid_edge": at_edge,
        "dequantized": dequantized,
    }
    protocol = {**ctx.evaluation_protocol(), "samples": int(n), "bandwidth_examples": int(val.shape[0]),
                "dequantisation": "uniform" if dequantized else None}
    return [Measurement("parzen_nll", float(nll.mean()), stderr=stderr, n=len(nll), details=details,
                        protocol=protocol, per_example=ctx.per_example(nll))]


def _sample_only(model_spec, dataset_spec) -> Optional[str]:
    if Capability.LOG_LIKELIHOOD in model_spec.capabilities:
        return f"{model_spec.name} has its own likelihood (see nll); parzen_nll is for sample-only models"
    return None


# ----------------------------------------------------------------------------- mode coverage

HIGH_QUALITY_STDS = 3.0
COVERED_SHARE = 0.01  # a mode is covered when it gets >= 1% of the high-quality samples
KMEANS_MAX_TRAIN = 20000


def known_modes(dataset_spec) -> Optional[int]:
    """K for a dataset with K known modes (tag ``modes:K`` or the name ``8gaussians``), else None."""
    for tag in dataset_spec.tags:
        if isinstance(tag, str) and tag.startswith("modes:"):
            try:
                return int(tag.split(":", 1)[1])
            except ValueError:
                return 8
    return 8 if dataset_spec.name == "8gaussians" else None


def fit_modes(x: torch.Tensor, k: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """KMeans centres (k, D) and per-mode standard deviations (k,) from data ``x`` (N, D)."""
    from sklearn.cluster import KMeans

    data = x.reshape(x.shape[0], -1).double().numpy()[:KMEANS_MAX_TRAIN]
    km = KMeans(n_clusters=k, n_init=10, random_state=seed).fit(data)
    centres = km.cluster_centers_
    sq = ((data - centres[km.labels_]) ** 2).sum(1)
    stds = np.array([math.sqrt(sq[km.labels_ == j].mean() / data.shape[1]) for j in range(k)])
    return centres, stds


def coverage(samples: torch.Tensor, centres: np.ndarray, stds: np.ndarray) -> dict:
    """Assign samples to their nearest mode and apply the 3-sigma and 1%-share rules."""
    s = samples.reshape(samples.shape[0], -1).double().numpy()
    dist = np.sqrt(((s[:, None, :] - centres[None]) ** 2).sum(-1))  # (n, K)
    nearest = dist.argmin(1)
    high_quality = dist[np.arange(len(s)), nearest] <= HIGH_QUALITY_STDS * stds[nearest]
    counts = np.bincount(nearest[high_quality], minlength=len(centres))
    n_hq = int(high_quality.sum())
    covered = counts >= max(1.0, COVERED_SHARE * n_hq) if n_hq else np.zeros(len(centres), bool)
    return {"modes_covered": int(covered.sum()), "high_quality": n_hq, "counts": counts.tolist(),
            "high_quality_share": n_hq / max(len(s), 1)}


def mode_coverage(ctx: MetricContext, n: int) -> list:
    """Modes covered and the share of high-quality samples among ``n`` model samples."""
    k = known_modes(ctx.dataset.spec) or 8
    key = ("mode_coverage.modes", ctx.dataset.provenance, k)
    if key not in ctx.run_cache:
        ctx.run_cache[key] = fit_modes(ctx.dataset.train.x, k)
    centres, stds = ctx.run_cache[key]
    samples = ctx.model.sample(n, ctx.generator(201))
    result = coverage(samples, centres, stds)
    p = result["high_quality_share"]
    details = {"modes": k, "rule": f"within {HIGH_QUALITY_STDS:g} sd of nearest mode; covered at >= "
                                    f"{COVERED_SHARE:.0%} of high-quality samples",
               "counts": result["counts"], "mode_std": [float(v) for v in stds]}
    protocol = {"samples": int(n), "modes": k, "high_quality_stds": HIGH_QUALITY_STDS, "covered_share": COVERED_SHARE}
    return [
        Measurement("modes_covered", result["modes_covered"], n=n, details=details, protocol=protocol),
        Measurement("high_quality_share", p, stderr=math.sqrt(p * (1 - p) / n), n=n, details={"modes": k},
                    protocol=protocol),
    ]


def _has_modes(model_spec, dataset_spec) -> Optional[str]:
    if known_modes(dataset_spec) is None:
        return f"{dataset_spec.name} has no known modes (name 8gaussians or tag modes:K)"
    return None


# ----------------------------------------------------------------------------- conditional accuracy


class LogisticClassifier:
    """Multinomial logistic regression (scikit-learn) on flattened, scaled inputs."""

    def __init__(self, dataset, seed: int = 0):
        from sklearn.linear_model import LogisticRegression

        spec = dataset.spec
        self.divisor = float(spec.levels - 1) if spec.kind is DataKind.DISCRETE else 1.0
        self.model = LogisticRegression(max_iter=1000, C=1.0, random_state=seed)
        self.model.fit(self._features(dataset.train.x), dataset.train.y.numpy())

    def _features(self, x: torch.Tensor) -> np.ndarray:
        return (x.reshape(x.shape[0], -1).double() / self.divisor).numpy()

    def predict(self, x: torch.Tensor) -> np.ndarray:
        return self.model.predict(self._features(x))


class ExtractorClassifier:
    def __init__(self, extractor):
        self.extractor = extractor

    def predict(self, x: torch.Tensor) -> np.ndarray:
        with torch.no_grad():
            return self.extractor.classify(x).argmax(1).cpu().numpy()


def _classifier(ctx: MetricContext):
    """(classifier with predict(x) -> labels, description dict), cached for the run."""
    dataset = ctx.dataset
    name = dataset.spec.feature_extractor
    test = ctx.evaluation_split()
    key = ("conditional_accuracy.classifier", name, dataset.provenance, len(test))
    if key in ctx.run_cache:
        return ctx.run_cache[key]
    why_not = None
    classifier, description = None, None
    extractor_spec = ctx.feature_extractors.get(name) if name else None
    if extractor_spec is None:
        why_not = f"no feature extractor {name!r} registered" if name else "the dataset names no feature extractor"
    else:
        why_not = extractor_spec.check(ctx.data_root) if extractor_spec.check is not None else None
        if why_not is None:
            try:
                extractor = extractor_spec.build(dataset, ctx.device)
            except Exception as exc:  # e.g. corrupt weights: fall back, and say why in details
                extractor, why_not = None, f"building {name!r} failed: {type(exc).__name__}: {exc}"
            if extractor is not None and hasattr(extractor, "classify"):
                classifier = ExtractorClassifier(extractor)
                description = {"classifier": f"feature extractor {name}",
                               "classifier_fingerprint": getattr(extractor, "fingerprint", None)}
            elif extractor is not None:
                why_not = f"feature extractor {name!r} has no classify()"
    if classifier is None:
        classifier = LogisticClassifier(dataset, seed=0)
        description = {"classifier": "logistic regression (scikit-learn) on the training split",
                       "extractor_not_used": why_not}
    description["classifier_test_accuracy"] = float((classifier.predict(test.x) == test.y.numpy()).mean())
    description["classifier_test_examples"] = len(test)
    ctx.run_cache[key] = (classifier, description)
    return classifier, description


def conditional_accuracy(ctx: MetricContext, n: int) -> list:
    """The share of ``n // C`` samples for each of the C classes that a classifier assigns to their class."""
    classes = int(ctx.dataset.spec.num_classes)
    per_class = max(1, int(n) // classes)
    classifier, description = _classifier(ctx)
    labels = torch.arange(classes).repeat_interleave(per_class)
    samples = ctx.model.sample(len(labels), ctx.generator(301), labels=labels)
    predicted = classifier.predict(samples)
    hits = predicted == labels.numpy()
    n = len(hits)
    p = float(hits.mean())
    details = dict(description)
    details["per_class"] = [float(hits[labels.numpy() == c].mean()) for c in range(classes)]
    details["samples_per_class"] = per_class
    protocol = {"classifier": description["classifier"], "samples_per_class": per_class,
                "classifier_fingerprint": description.get("classifier_fingerprint")}
    return [Measurement("conditional_accuracy", p, stderr=math.sqrt(p * (1 - p) / n), n=n, details=details,
                        protocol=protocol)]


def _labelled(model_spec, dataset_spec) -> Optional[str]:
    if dataset_spec.num_classes < 2:
        return f"{dataset_spec.name} has no class labels"
    return None


# ----------------------------------------------------------------------------- registration


@hookimpl
def harness_register_metrics(register):
    register(MetricSpec(
        name="parzen_nll",
        compute=counted(parzen_nll),
        outputs=[PARZEN_OUTPUT],
        requires=[Capability.SAMPLE],
        applies=_sample_only,
        sizes=SAMPLE_COUNT,
        description="Gaussian Parzen-window NLL of the test split from model samples (sigma chosen on "
                    "validation); weak, biased estimate for sample-only models.",
    ))
    register(MetricSpec(
        name="mode_coverage",
        compute=counted(mode_coverage),
        outputs=MODE_OUTPUTS,
        requires=[Capability.SAMPLE],
        applies=_has_modes,
        sizes=SAMPLE_COUNT,
        description="Modes covered and share of high-quality samples (within 3 sd of a mode).",
    ))
    register(MetricSpec(
        name="conditional_accuracy",
        compute=counted(conditional_accuracy),
        outputs=[CONDITIONAL_OUTPUT],
        requires=[Capability.SAMPLE, Capability.CONDITIONAL],
        applies=_labelled,
        sizes=SAMPLE_COUNT,
        description="Fraction of class-conditional samples a classifier assigns to the asked class.",
    ))
