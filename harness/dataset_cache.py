"""Materialised datasets by name: each loaded once per process, checked first when it needs files the
user brings, and hashed into the provenance that is part of every job's key."""

from __future__ import annotations

from pathlib import Path

from harness.contracts import Dataset, UserError
from harness.data import provenance_hash


class DatasetCache:
    """Datasets of one data root by name, each loaded once with its provenance hash."""

    def __init__(self, data_root: Path):
        self.data_root = data_root
        self._datasets: dict = {}

    def get(self, spec) -> Dataset:
        """The dataset of ``spec``; :class:`UserError` saying what is missing when its files are not there."""
        if spec.name not in self._datasets:
            if spec.check is not None:
                missing = spec.check(self.data_root)
                if missing:
                    raise UserError(f"dataset {spec.name!r} is not available: {missing}")
            splits = spec.load(self.data_root)
            self._datasets[spec.name] = Dataset(spec, splits, provenance_hash(splits, f"{spec.name}:{spec.version}"))
        return self._datasets[spec.name]
