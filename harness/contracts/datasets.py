"""The dataset contract: splits of examples, the registered spec and the materialised dataset."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Optional

import torch

from harness.contracts.kinds import DataKind


@dataclass(frozen=True)
class Split:
    """One split of a dataset. ``x`` is float32 of shape (N, *event_shape).

    Discrete data holds integer levels 0..K-1 and binary data 0/1, still as float32.
    ``y`` holds int64 class labels or is None for unlabelled data.
    """

    x: torch.Tensor
    y: Optional[torch.Tensor] = None

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def __post_init__(self):
        if self.y is not None and self.y.shape[0] != self.x.shape[0]:
            raise ValueError(f"labels ({self.y.shape[0]}) and examples ({self.x.shape[0]}) differ in count")


@dataclass(frozen=True)
class Splits:
    train: Split
    val: Split
    test: Split


@dataclass
class DatasetSpec:
    """A registered dataset: its declarations and how to materialise it.

    ``load(root)`` returns :class:`Splits` (``root`` is the data root, a ``pathlib.Path``).
    ``check(root)`` returns None when the data is available, otherwise a message saying what is
    missing and where to put it (used for user-supplied data).
    ``fetch(root)`` downloads user-supplied data into the data root and verifies it, returning the
    paths it wrote; only ever called on the user's explicit request (``datasets fetch NAME``).
    ``log_density(x)`` is the true log-density for synthetic sets, ``entropy`` its differential
    entropy in nats (the lowest NLL any model can reach), ``entropy_stderr`` the error of that value.
    ``feature_extractor`` names the extractor fidelity metrics should use.
    ``tags`` are free-form (``"toy2d"``, ``"image"``) for selection and grouping.
    """

    name: str
    kind: DataKind
    event_shape: tuple
    load: Callable[[Any], Splits]
    num_classes: int = 0
    levels: Optional[int] = None
    description: str = ""
    check: Optional[Callable[[Any], Optional[str]]] = None
    fetch: Optional[Callable[[Any], list]] = None
    log_density: Optional[Callable[[torch.Tensor], torch.Tensor]] = None
    entropy: Optional[float] = None
    entropy_stderr: float = 0.0
    feature_extractor: Optional[str] = None
    tags: tuple = ()
    version: str = "1"

    def __post_init__(self):
        self.kind = DataKind(self.kind)
        self.event_shape = tuple(int(s) for s in self.event_shape)
        if self.kind is DataKind.BINARY:
            self.levels = 2
        if self.kind is DataKind.DISCRETE and not self.levels:
            raise ValueError(f"discrete dataset {self.name!r} must declare its number of levels")

    @property
    def dim(self) -> int:
        return math.prod(self.event_shape)

    @property
    def is_image(self) -> bool:
        return len(self.event_shape) == 3


@dataclass
class Dataset:
    """A materialised dataset: its spec, its splits and the provenance hash of the arrays."""

    spec: DatasetSpec
    splits: Splits
    provenance: str

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def train(self) -> Split:
        return self.splits.train

    @property
    def val(self) -> Split:
        return self.splits.val

    @property
    def test(self) -> Split:
        return self.splits.test
