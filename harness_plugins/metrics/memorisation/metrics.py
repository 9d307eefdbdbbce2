"""The copy metrics as a registered metric, ``copying``: three outputs that say whether a model's
samples lie closer to its training split than new data from the same distribution does.

In the dataset's feature space (its feature extractor, ``DatasetSpec.feature_extractor``; raw
coordinates for the 2-D toys), between the job's ``n`` shared samples (the sample count every sample
metric declares, ``features.SAMPLE_COUNT``: 500 at smoke, 2000 at quick, 10000 at full), the training
split (up to ``reference.MAX_TRAIN`` examples) and the test split's evaluation subset of
``min(n, len(test))`` examples (see :mod:`harness_plugins.metrics.memorisation.reference`):

- ``copying_ct``: Meehan, Chaudhuri & Dasgupta's C_T (AISTATS 2020), a test-share-weighted mean of
  per-cell Mann-Whitney z-scores of the samples' against the test examples' distances to their nearest
  training example; about 0 when the samples are as far from the training data as new data, below
  about -3 copying, positive underfitting. stderr: its standard deviation under the null.
- ``authenticity``: Alaa et al.'s AuthPct (ICML 2022) as a share: samples farther from their nearest
  training example than that example is from its own nearest other training example.
- ``copy_rate``: the share of samples at most as far from a training example as the closest 5% of
  test examples are (the 0.05-quantile of the test examples' nearest-training distances).

Each measurement's details carry what the test examples themselves score (``test_reference``,
:data:`harness.contracts.REFERENCE_LEVEL`), the value of a model that draws new data. All depend on the
sample count, which is part of their identity. The outputs have role memorisation, so the report's
tables highlight the worst cell (the most copying), and are judged ``Judge.BEYOND_REFERENCE``: a
comparison calls a row worse only when it moves towards copying past its floor and ends past what the
test examples score by more than the floor, so a model that fits better (moving down from above the
reference) is not a regression. The metric offers the report each sample's nearest training example
and the copy threshold (:mod:`.neighbours`).
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np

from harness import Capability, Judge, Measurement, MetricContext, MetricSpec, Output, Role, Tolerance, hookimpl
from harness.contracts import REFERENCE_LEVEL
from harness_plugins.metrics.memorisation import features, neighbours, reference, statistics

NAME = "copying"

# The comparisons judge every output one-sidedly about its test_reference (see the module doc).
JUDGE = Judge.BEYOND_REFERENCE

# Tolerances (the regression gate's floor). C_T is a z-score averaged over cells: its null standard
# deviation is 0.3-0.4 at smoke, and a model's value moves by more than that between seeds, so 1.0
# (or 25% of values far from 0). The shares are binomial: at smoke's 500 samples their standard
# error is up to 0.022, so 0.05.
OUTPUTS = (
    Output("copying_ct", "z", higher_is_better=True, estimator="statistic", role=Role.MEMORISATION, order=96,
           sample_count_in_id=True, judge=JUDGE, tolerance=Tolerance(relative=0.25, absolute=1.0),
           description="data-copying test C_T (Meehan et al. 2020): per k-means cell of the training split, "
                       "Mann-Whitney z of samples' vs test examples' nearest-training distances, test-weighted "
                       "mean; ~0 like new data, below -3 copying, above 0 underfitting"),
    Output("authenticity", "fraction", higher_is_better=True, estimator="statistic", role=Role.MEMORISATION,
           order=97, sample_count_in_id=True, judge=JUDGE, tolerance=Tolerance(absolute=0.05),
           description="share of samples farther from their nearest training example than it lies from its own "
                       "nearest other training example (AuthPct, Alaa et al. 2022); new data: details test_reference"),
    Output("copy_rate", "fraction", higher_is_better=False, estimator="statistic", role=Role.MEMORISATION,
           order=98, sample_count_in_id=True, judge=JUDGE, tolerance=Tolerance(absolute=0.05),
           description="share of samples at most as far from a training example as the closest 5% of test "
                       "examples are; about 0.05 for new data, 1 for a copier"),
)


def _binomial_stderr(p: float, n: int) -> float:
    return math.sqrt(p * (1.0 - p) / n)


def measure(ref: reference.CopyReference, sample_features: np.ndarray) -> list:
    """The three measurements of samples with features ``sample_features`` against ``ref``."""
    m = len(sample_features)
    located = reference.locate(ref, sample_features)
    ct = statistics.c_t(located.cell_distance, located.cells, ref.test_cell_distance, ref.test_cells, ref.cells)
    auth = reference.sample_authenticity(ref, located)
    rate = statistics.copy_rate(located.distance, ref.threshold)
    base = {"n": m, "n_train": len(ref.train), "n_test": len(ref.test),
            "extractor": ref.extractor, "extractor_fingerprint": ref.fingerprint[:16],
            "feature_dim": int(ref.train.shape[1]), "reference": "train (nearest neighbour) vs test",
            "median_distance": float(np.median(located.distance)),
            "test_median_distance": float(np.median(ref.test_distance))}
    return [
        Measurement("copying_ct", ct.value, stderr=ct.null_sd, n=m, details={
            **base, REFERENCE_LEVEL: 0.0, "stderr_kind": "standard deviation under the null (Z_U ~ N(0,1) per cell)",
            "cells": ct.cells, "cells_used": len(ct.z),
            "cell_rule": f"cells holding more than {statistics.CELL_SAMPLES} samples, weighted by their test share",
            "z_min": float(min(ct.z)), "z_max": float(max(ct.z))}),
        Measurement("authenticity", auth, stderr=_binomial_stderr(auth, m), n=m, details={
            **base, REFERENCE_LEVEL: ref.test_authenticity}),
        Measurement("copy_rate", rate, stderr=_binomial_stderr(rate, m), n=m, details={
            **base, REFERENCE_LEVEL: ref.test_copy_rate, "threshold": ref.threshold,
            "quantile": statistics.COPY_QUANTILE}),
    ]


def compute(ctx: MetricContext) -> list:
    n = features.sample_count(ctx)
    ref = reference.reference_for(ctx.dataset, n, ctx.feature_extractors, ctx.device, ctx.data_root, ctx.cache_dir,
                                  ctx.run_cache)
    name, extractor = features.dataset_extractor(ctx.dataset, ctx.feature_extractors, ctx.device, ctx.data_root,
                                                 ctx.run_cache)
    return measure(ref, features.job_sample_features(ctx, name, extractor, n))


def _applies(model_spec, dataset_spec) -> Optional[str]:
    if not dataset_spec.feature_extractor:
        return f"dataset {dataset_spec.name} names no feature extractor"
    return None


def metric_spec() -> MetricSpec:
    return MetricSpec(
        name=NAME, compute=compute, outputs=OUTPUTS, requires=[Capability.SAMPLE], applies=_applies,
        sizes=features.SAMPLE_COUNT, neighbours=neighbours.nearest_training_examples,
        description="Copy metrics in the dataset's feature space, samples vs the training split with the test "
                    "split as yardstick: C_T (Meehan et al. 2020), authenticity (Alaa et al. 2022), copy_rate.")


@hookimpl
def harness_register_metrics(register):
    register(metric_spec())
