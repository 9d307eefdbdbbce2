"""Fidelity metrics (fid, kid, precision, recall, density, coverage): declarations and registration.

Fidelity metrics ``fid``, ``kid``, ``precision`` and ``recall`` (computed by torch-fidelity) and
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
  :data:`~.references.FEATURE_PASSES` counts them.
- An extractor whose ``check(data_root)`` gives a reason raises
  :class:`~.references.FidelityUnavailable` carrying it.

Protocol (what must match for two numbers to be compared, besides the sample count in the identity):
the extractor's name and fingerprint (its weights and its input transform: scaling, resizing), the
sample count, the reference split and its size, and the subset's seed (None when the whole split is
the reference).

The package: :mod:`.estimators` (the statistics of two feature sets), :mod:`.references` (extractors,
reference and sample features, their caches, the noise floor) and here the declarations, the compute
step and the registration.
"""

from __future__ import annotations

from typing import Optional

from harness import Capability, Measurement, MetricContext, MetricSpec, Output, Tolerance, hookimpl
from harness.contracts import EVALUATION_SUBSET_SEED
from harness_plugins.metrics.fidelity.estimators import FeatureSet, score, torch_fidelity_version
from harness_plugins.metrics.fidelity.references import (extractor_for, reference_features, sample_features,
                                                         train_vs_test)
from harness_plugins.metrics.job_samples import SAMPLE_COUNT, sample_count

METRICS = ("fid", "kid", "precision", "recall", "density", "coverage")


# ----------------------------------------------------------------------------- measurements

# The declarations. Each is a sample statistic whose value depends on the sample count (FID is biased
# upwards at small n), so the count is part of its identity (fid@500 is not fid@2000).
# Tolerances (the regression gate's floor): statistics of 500 samples (smoke) are noisy, so FID may
# move by 10% (or 0.01, for values near zero), KID by 25% (or 0.001), precision and recall by 0.05.
PROTOCOL = ("extractor", "extractor_fingerprint", "samples", "reference_split", "reference_examples",
            "reference_subset_seed")
OUTPUTS = {
    "fid": Output("fid", "", higher_is_better=False, estimator="statistic", order=60, sample_count_in_id=True,
                  headline=True, tolerance=Tolerance(relative=0.10, absolute=0.01), protocol=PROTOCOL,
                  description="Frechet distance to the test split in the extractor's features"),
    "kid": Output("kid", "", higher_is_better=False, estimator="statistic", order=70, sample_count_in_id=True,
                  tolerance=Tolerance(relative=0.25, absolute=0.001), protocol=PROTOCOL,
                  description="kernel (cubic polynomial) MMD^2 to the test split, mean over subsets"),
    "precision": Output("precision", "fraction", higher_is_better=True, estimator="statistic", order=80,
                        sample_count_in_id=True, headline=True, tolerance=Tolerance(absolute=0.05), protocol=PROTOCOL,
                        description="share of samples inside the k-NN manifold of the test split"),
    "recall": Output("recall", "fraction", higher_is_better=True, estimator="statistic", order=90,
                     sample_count_in_id=True, headline=True, tolerance=Tolerance(absolute=0.05), protocol=PROTOCOL,
                     description="share of test examples inside the k-NN manifold of the samples"),
    # density counts balls per sample and can exceed 1; it moves more than precision between seeds.
    "density": Output("density", "", higher_is_better=True, estimator="statistic", order=85, sample_count_in_id=True,
                      tolerance=Tolerance(absolute=0.1), protocol=PROTOCOL,
                      description="test-split k-NN balls (k=5) holding a sample, per sample, over k: 1 for a "
                                  "model like the data (Naeem et al. 2020)"),
    "coverage": Output("coverage", "fraction", higher_is_better=True, estimator="statistic", order=95,
                       sample_count_in_id=True, tolerance=Tolerance(absolute=0.05), protocol=PROTOCOL,
                       description="share of test examples whose k-NN ball (k=5) holds a sample (Naeem et al. 2020)"),
}


def _measurement(metric, value, stderr, n, details) -> Measurement:
    protocol = {"extractor": details["extractor"], "extractor_fingerprint": details["extractor_fingerprint"],
                "samples": int(n), "reference_split": details["reference_split"],
                "reference_examples": int(details["n_reference"]),
                "reference_subset_seed": details["reference_subset_seed"]}
    return Measurement(metric, value, stderr=stderr, n=n, details=details, protocol=protocol)


def _base_details(metric, n, extractor_name, extractor, reference: FeatureSet, dataset) -> dict:
    whole = reference.n >= len(dataset.test)  # the reference is ctx.evaluation_split(n) of the test split
    return {
        "n": int(n),
        "extractor": extractor_name,
        "extractor_fingerprint": extractor.fingerprint[:16],
        "feature_dim": int(reference.features.shape[1]),
        "reference": "test",
        "reference_split": "test",
        "n_reference": reference.n,
        "reference_subset_seed": None if whole else EVALUATION_SUBSET_SEED,
        "torch_fidelity": torch_fidelity_version(),
    }


def compute_metric(metric: str, ctx: MetricContext, n: int) -> list:
    """One fidelity metric for the job in ``ctx`` from ``n`` model samples (with its train-vs-test noise
    floor in details)."""
    with ctx.timed("fidelity_references"):  # the extractor, the test reference and the noise floor: once per worker
        name, extractor = extractor_for(ctx.dataset, ctx.feature_extractors, ctx.device, ctx.data_root, ctx.run_cache)
        # the reference is ctx.evaluation_split(n) (split_subset selects it), cached across jobs and runs
        reference = reference_features(ctx.dataset, "test", name, extractor, n, ctx.cache_dir, ctx.run_cache)
        floor = train_vs_test(ctx.dataset, metric, name, extractor, n, ctx.cache_dir, ctx.run_cache)
    generated = sample_features(ctx, name, extractor, n)
    value, stderr, extra = score(metric, generated, reference)
    details = _base_details(metric, n, name, extractor, reference, ctx.dataset)
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
        details = _base_details(metric, n, name, extractor, reference, dataset)
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
