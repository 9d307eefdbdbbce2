"""Built-in plugins of harness (installed as ``harness_plugins``).

Each module is an ordinary plugin, registered through the entry-point group ``harness`` in
pyproject.toml exactly as a third-party plugin would be, and written only against the public API
(``harness``, ``harness.contracts``, ``harness.data``).
"""
