"""The copy metrics' reference for one dataset: the training split's and the test split's features in
the dataset's feature space, and everything about them that does not depend on a model (the test
examples' nearest training examples, the copy threshold, C_T's cells), built once per run.

- Training examples: the whole training split up to ``MAX_TRAIN`` examples (beyond it, the split's
  evaluation subset of that size, :func:`harness.contracts.evaluation_indices`); ``train_rows`` maps
  each row back to its index in the split.
- Test examples: the evaluation subset of ``n`` examples every metric of the job uses
  (``MetricContext.evaluation_split(n)``), the fidelity metrics' reference.
- What the test examples score as if they were samples (``test_copy_rate``, ``test_authenticity``):
  the value of a model whose samples are new draws from the data, the copy metrics' yardstick.

:func:`nearest_rows` gives, for any features, the index in the training split of each one's nearest
training example and the distance to it (for the report's panels, :mod:`.neighbours`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np
from harness import MetricSkipped
from harness.contracts import evaluation_indices
from harness_plugins.metrics.memorisation import features, statistics

MAX_TRAIN = 20_000  # training examples searched for each sample's nearest neighbour (every 2-D toy's 20,000)
MIN_TEST = 20  # test examples the copy threshold and C_T's cells need at least


@dataclass
class CopyReference:
    """One dataset's training and test features and what the copy metrics derive from them alone."""

    extractor: str
    fingerprint: str
    train: np.ndarray  # (T, F) training features
    train_rows: np.ndarray  # (T,) index in the training split of each row of ``train``
    test: np.ndarray  # (n, F) test features
    test_distance: np.ndarray  # (n,) each test example's distance to its nearest training example
    threshold: float  # copy_rate's threshold: the COPY_QUANTILE-quantile of test_distance
    test_copy_rate: float
    test_authenticity: float
    cells: int
    centres: np.ndarray  # (cells, F) C_T's cell centres (k-means on ``train``)
    train_cells: np.ndarray
    test_cells: np.ndarray
    test_cell_distance: np.ndarray  # each test example's distance to its nearest training example in its cell
    _other: Optional[np.ndarray] = field(default=None, repr=False)  # nearest-other distances, nan until needed

    def other_distance(self, rows: np.ndarray) -> np.ndarray:
        """The nearest-other-training-example distance of every training row (computed for ``rows``
        on first need, kept for later jobs; nan where not yet needed)."""
        if self._other is None:
            self._other = np.full(len(self.train), np.nan)
        todo = np.unique(rows)
        todo = todo[np.isnan(self._other[todo])]
        if len(todo):
            self._other[todo] = statistics.nearest_other_distance(self.train, todo)
        return self._other


def _authenticity(reference: CopyReference, index: np.ndarray, distance: np.ndarray) -> float:
    return float(statistics.authentic(distance, index, reference.other_distance(index)).mean())


def build_reference(dataset, n: int, name: str, extractor, cache_dir=None, run_cache=None) -> CopyReference:
    """The reference of ``dataset`` for sample count ``n`` (see the module doc); a
    :class:`harness.MetricSkipped` when its splits are too small."""
    n_train, n_test = len(dataset.train), min(int(n), len(dataset.test))
    if n_train < 2 or n_test < MIN_TEST:
        raise MetricSkipped(f"copy metrics need at least 2 training and {MIN_TEST} test examples; dataset "
                            f"{dataset.name!r} has {n_train} and {len(dataset.test)}")
    train = features.split_features(dataset, "train", MAX_TRAIN, name, extractor, cache_dir, run_cache)
    test = features.split_features(dataset, "test", n, name, extractor, cache_dir, run_cache)
    test_index, test_distance = statistics.nearest(test, train)
    cells = statistics.cell_count(len(test))
    centres = statistics.partition(train, cells)
    train_cells, test_cells = statistics.assign(train, centres), statistics.assign(test, centres)
    threshold = statistics.copy_threshold(test_distance)
    reference = CopyReference(
        extractor=name, fingerprint=extractor.fingerprint, train=train,
        train_rows=evaluation_indices(n_train, MAX_TRAIN).numpy(), test=test, test_distance=test_distance,
        threshold=threshold, test_copy_rate=statistics.copy_rate(test_distance, threshold), test_authenticity=0.0,
        cells=len(centres), centres=centres, train_cells=train_cells, test_cells=test_cells,
        test_cell_distance=statistics.cell_distances(test, test_cells, train, train_cells))
    reference.test_authenticity = _authenticity(reference, test_index, test_distance)
    return reference


def reference_for(dataset, n: int, feature_extractors, device="cpu", data_root=None, cache_dir=None,
                  run_cache=None) -> CopyReference:
    """:func:`build_reference`, once per run (``run_cache``), dataset, extractor and sample count."""
    run_cache = {} if run_cache is None else run_cache
    name, extractor = features.dataset_extractor(dataset, feature_extractors, device, data_root, run_cache)
    key = ("memorisation:reference", dataset.name, dataset.provenance, name, extractor.fingerprint, int(n))
    if key not in run_cache:
        run_cache[key] = build_reference(dataset, n, name, extractor, cache_dir, run_cache)
    return run_cache[key]


@dataclass(frozen=True)
class SampleCopies:
    """Where one set of samples lies against the reference: per sample, its nearest training example
    (row of ``reference.train``) and the distance to it, and its cell and in-cell distance for C_T."""

    index: np.ndarray
    distance: np.ndarray
    cells: np.ndarray
    cell_distance: np.ndarray


def locate(reference: CopyReference, sample_features: np.ndarray) -> SampleCopies:
    """Each sample's nearest training example, its cell and its nearest training example in the cell."""
    index, distance = statistics.nearest(sample_features, reference.train)
    cells = statistics.assign(sample_features, reference.centres)
    cell_distance = statistics.cell_distances(sample_features, cells, reference.train, reference.train_cells)
    return SampleCopies(index, distance, cells, cell_distance)


def sample_authenticity(reference: CopyReference, located: SampleCopies) -> float:
    """The authentic share of the located samples (:func:`statistics.authentic`)."""
    return _authenticity(reference, located.index, located.distance)


def nearest_rows(reference: CopyReference, sample_features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(index in the training split of each sample's nearest training example, the distance to it),
    searched among the reference's training examples (all of the split up to ``MAX_TRAIN``)."""
    index, distance = statistics.nearest(sample_features, reference.train)
    return reference.train_rows[index], distance
