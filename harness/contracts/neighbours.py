"""Nearest training examples a metric offers the report: the question (:class:`NeighbourQuery`) and the
answer (:class:`Neighbours`).

A metric that measures how close samples lie to the training split (a copy test) knows the space it
measures distances in and the distance at which it counts a sample as a copy. It offers both through
``MetricSpec.neighbours``, a function ``NeighbourQuery -> Neighbours``; the report calls it for the
saved samples of every model whose run measured that metric, and draws each sample beside its nearest
training example (:mod:`harness.report.nearest`). The core reads nothing else of the metric.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Optional

import numpy as np
import torch

from harness.contracts.datasets import Dataset


@dataclass
class NeighbourQuery:
    """Data-space ``samples`` (N, *event_shape) of a model trained on ``dataset`` (materialised), with
    what a metric's compute step would have had: the ``profile`` of the run that made them, the feature
    extractors, ``device``, ``data_root``, the run's ``cache_dir`` and a ``run_cache`` shared by the
    queries of one report."""

    dataset: Dataset
    samples: torch.Tensor
    profile: Any  # harness.profiles.Profile
    feature_extractors: Mapping[str, Any] = field(default_factory=dict)
    device: Any = "cpu"
    data_root: Optional[Any] = None
    cache_dir: Optional[Any] = None
    run_cache: dict = field(default_factory=dict)


@dataclass
class Neighbours:
    """Per sample: ``index``, the row of ``dataset.train`` nearest it, and ``distance``, how far that is
    in the metric's space (``space``, for the caption). ``threshold``: the distance at or below which the
    metric counts a sample as a copy (None: it draws no line), with ``threshold_note`` saying what it is.
    """

    index: np.ndarray
    distance: np.ndarray
    space: str
    threshold: Optional[float] = None
    threshold_note: str = ""

    def __post_init__(self):
        self.index = np.asarray(self.index, dtype=np.int64).reshape(-1)
        self.distance = np.asarray(self.distance, dtype=np.float64).reshape(-1)
        if len(self.index) != len(self.distance):
            raise ValueError(f"neighbours: {len(self.index)} indices but {len(self.distance)} distances")
