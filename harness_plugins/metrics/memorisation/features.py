"""Where the copy metrics get their features: the dataset's feature extractor, the cached features of
its splits and of the job's shared samples (their count per profile, :data:`SAMPLE_COUNT`, is the one
every sample metric declares), all from the fidelity plugin's machinery (so the copy metrics measure in
the space FID measures in, and add no sampling and no feature pass of samples). This module is the one
place the package reaches into other modules of the metrics group."""

from __future__ import annotations

import numpy as np
import torch

from harness import MetricContext
from harness_plugins.metrics.fidelity import extractor_for, reference_features, sample_features
from harness_plugins.metrics.job_samples import SAMPLE_COUNT, sample_count

__all__ = ["SAMPLE_COUNT", "sample_count", "dataset_extractor", "split_features", "job_sample_features",
           "features_of"]


def dataset_extractor(dataset, feature_extractors, device="cpu", data_root=None, run_cache=None) -> tuple:
    """(name, extractor) of the dataset's feature extractor, built once per run; a
    :class:`harness.MetricSkipped` when the dataset names none or it is unusable here."""
    return extractor_for(dataset, feature_extractors, device, data_root, run_cache)


def split_features(dataset, split: str, n: int, name: str, extractor, cache_dir=None, run_cache=None) -> np.ndarray:
    """Features (float64) of the split's evaluation subset of ``n`` examples (all of it when it holds
    no more), cached across jobs and runs as the fidelity references are."""
    return _numpy(reference_features(dataset, split, name, extractor, n, cache_dir, run_cache).features)


def job_sample_features(ctx: MetricContext, name: str, extractor, n: int) -> np.ndarray:
    """Features (float64) of the job's ``n`` shared model samples, the very ones the fidelity metrics read."""
    return _numpy(sample_features(ctx, name, extractor, n).features)


def features_of(extractor, x: torch.Tensor) -> np.ndarray:
    """Features (float64) of data-space examples ``x`` (N, *event_shape)."""
    with torch.no_grad():
        return _numpy(extractor.features(x))


def _numpy(features: torch.Tensor) -> np.ndarray:
    return features.detach().cpu().double().numpy().reshape(features.shape[0], -1)
