"""Built-in plugins of harness, laid out by the hook they serve:

- ``harness_plugins.models``: one module (or package) per generative family;
- ``harness_plugins.datasets``: dataset groups (2-D toys, digits/MNIST subsets, user-supplied files);
- ``harness_plugins.metrics``: metric groups and the feature extractors they use;
- ``harness_plugins.executors``: where jobs run (local, process, ray);
- ``harness_plugins.reports``: the report formats (csv, json, markdown, html, latex, terminal);
- ``harness_plugins.trackers``: experiment trackers (MLflow, Weights & Biases), optional extras.

Each module is an ordinary plugin, registered through the entry-point group ``harness`` in
pyproject.toml exactly as a third-party plugin would be, and written only against the public API
(``harness``, ``harness.contracts``, ``harness.data``). No module imports from another group.
"""
