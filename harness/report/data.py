"""What the report needs from datasets at report time: their declarations (entropy, levels, shape)
and, for the reference panels, their test split and true log-density, through the plugin host."""

from __future__ import annotations

from pathlib import Path
from typing import Optional


class DatasetSource:
    """Datasets by name through the plugin host, each loaded at most once. ``cache``: a
    :class:`harness.dataset_cache.DatasetCache` already holding the run's datasets (``run`` passes its own,
    so nothing is loaded twice)."""

    def __init__(self, host, data_root: Optional[Path] = None, cache=None):
        from harness.data import resolve_data_root
        from harness.dataset_cache import DatasetCache

        self.host = host
        self.cache = cache if cache is not None else DatasetCache(resolve_data_root(data_root))
        self._failed: dict = {}

    def spec(self, name: str):
        """The dataset's spec, or None when no installed plugin registers it."""
        return self.host.registry.datasets.get(name)

    def load(self, name: str) -> tuple:
        """``(Dataset, "")``, or ``(None, why not)`` when it is not installed or cannot be loaded."""
        spec = self.spec(name)
        if spec is None:
            return None, f"dataset {name!r} is not installed here"
        if name in self._failed:
            return None, self._failed[name]
        try:
            return self.cache.get(spec), ""
        except Exception as exc:  # a report never fails for want of a reference panel
            self._failed[name] = f"dataset {name!r} could not be loaded: {exc}"
            return None, self._failed[name]
