"""The declaration of one 2-D toy (:class:`Toy`): its sampler, true log-density, entropy and version.

Adding a toy is one :class:`Toy` in :data:`harness_plugins.datasets.toy2d.toys.TOYS`. Every toy is
drawn i.i.d. from numpy's ``default_rng`` with a fixed seed per split, so the splits are identical on
every machine and run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np
import torch

from harness import DataKind, DatasetSpec, Split
from harness.contracts import Splits

SPLIT_SIZES = {"train": 20000, "val": 5000, "test": 5000}
SPLIT_SEEDS = {"train": 1, "val": 2, "test": 3}
TAG = "toy2d"  # every toy's first tag: models select the toys by it


@dataclass(frozen=True)
class Toy:
    """A 2-D toy density.

    ``sample(n, rng)``: n i.i.d. points (n, 2) from a numpy Generator. ``log_density(x)``: the true
    log-density of points (N, 2), float64. ``entropy`` / ``entropy_error``: its differential entropy in
    nats and the error of that figure, computed by the midpoint rule on the box and grid of
    ``quadrature`` (half-width, spacing; see :mod:`~harness_plugins.datasets.toy2d.entropy`), or exact
    where ``quadrature`` is None. ``tags`` come after ``"toy2d"``. ``version`` is part of the dataset's
    provenance hash: bumped whenever what the toy generates changes, so results of the old and the new
    distribution never compare silently.
    """

    name: str
    sample: Callable[[int, np.random.Generator], np.ndarray]
    log_density: Callable[[torch.Tensor], torch.Tensor]
    entropy: float
    entropy_error: float
    description: str
    quadrature: Optional[tuple] = None
    tags: tuple = ()
    version: str = "1"

    def load(self, root=None) -> Splits:
        """The fixed train / validation / test splits (``root`` is unused: the toys are generated)."""
        parts = {}
        for split, size in SPLIT_SIZES.items():
            rng = np.random.default_rng(SPLIT_SEEDS[split])
            parts[split] = Split(torch.as_tensor(self.sample(size, rng), dtype=torch.float32))
        return Splits(**parts)

    def spec(self) -> DatasetSpec:
        """The dataset this toy registers."""
        return DatasetSpec(
            name=self.name, kind=DataKind.CONTINUOUS, event_shape=(2,), load=self.load,
            log_density=self.log_density, entropy=self.entropy, entropy_stderr=self.entropy_error,
            feature_extractor="raw", tags=(TAG, *self.tags), description=self.description, version=self.version,
        )
