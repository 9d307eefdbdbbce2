"""Memorisation: copy metrics that tell a model that generates from one that returns its training data.

- :mod:`.statistics`: the statistics on feature arrays (nearest neighbours, C_T, authenticity, copy rate);
- :mod:`.reference`: a dataset's training and test features and what they give once per run;
- :mod:`.features`: where the features come from (the fidelity plugin's extractor and caches);
- :mod:`.neighbours`: each sample's nearest training example and the copy threshold, for report panels;
- :mod:`.metrics`: the registered metric ``copying`` and its outputs (the plugin's hook).
"""

from harness_plugins.metrics.memorisation.metrics import harness_register_metrics

__all__ = ["harness_register_metrics"]
