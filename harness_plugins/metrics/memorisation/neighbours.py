"""What the copy metric offers the report's panels (``MetricSpec.neighbours``): each sample's nearest
training example, the distance to it and the copy threshold, all exactly as ``copy_rate`` measures them.

The reference is the one the metric builds for the run's sample count (:func:`reference.reference_for`,
in the query's run cache), so the panel's distances are in the metric's feature space, among the same
training examples, and its threshold is ``copy_rate``'s (``details["threshold"]`` of that measurement).
"""

from __future__ import annotations

from harness.contracts import NeighbourQuery, Neighbours
from harness_plugins.metrics.memorisation import features, reference, statistics


def nearest_training_examples(query: NeighbourQuery) -> Neighbours:
    """The :class:`harness.contracts.Neighbours` of ``query.samples``; a :class:`harness.MetricSkipped`
    when the dataset's extractor is unusable here or its splits are too small."""
    n = features.sample_count(query)
    ref = reference.reference_for(query.dataset, n, query.feature_extractors, query.device, query.data_root,
                                  query.cache_dir, query.run_cache)
    _, extractor = features.dataset_extractor(query.dataset, query.feature_extractors, query.device,
                                              query.data_root, query.run_cache)
    index, distance = reference.nearest_rows(ref, features.features_of(extractor, query.samples))
    return Neighbours(index, distance, space=f"{ref.extractor} features", threshold=ref.threshold,
                      threshold_note=f"copy_rate's threshold: the {statistics.COPY_QUANTILE:g} quantile of "
                                     f"{len(ref.test)} test examples' distances to their nearest training example")
