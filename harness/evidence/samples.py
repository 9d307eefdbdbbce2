"""Per-example values of one model on one evaluation subset, over its seeds, and their alignment with
another model's on the same test examples."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Tuple

import numpy as np

from harness.errors import UserError


@dataclass(frozen=True, eq=False)
class PerExample:
    """One model's per-example values (log-likelihoods or any per-example score) on one evaluation subset.

    ``name``: the model, for messages and matrices. ``values``: shape (seeds, examples), one row per
    independently trained seed, float64 (a 1-D array is one seed). ``indices``: the evaluation subset's
    indices into the test split (``harness.contracts.evaluation_indices``), one per column, unique; they
    say which test example each column is, so two models pair only on the same examples.

    Refuses (:class:`UserError`) a NaN or infinite value, fewer than two examples, duplicate indices, or
    indices that do not match the values' columns."""

    name: str
    values: np.ndarray
    indices: np.ndarray

    def __post_init__(self):
        values = np.array(self.values, dtype=np.float64)
        if values.ndim == 1:
            values = values[None, :]
        indices = np.asarray(self.indices)
        if values.ndim != 2 or values.shape[0] < 1:
            raise UserError(f"{self.name}: per-example values must have shape (seeds, examples), "
                            f"not {tuple(np.shape(self.values))}")
        if indices.ndim != 1 or indices.shape[0] != values.shape[1]:
            raise UserError(f"{self.name}: {values.shape[1]} per-example values per seed but "
                            f"{indices.size} evaluation indices; give one index per example")
        if not np.issubdtype(indices.dtype, np.integer):
            raise UserError(f"{self.name}: evaluation indices must be integers, not {indices.dtype}")
        if values.shape[1] < 2:
            raise UserError(f"{self.name}: at least two test examples are needed to compare per-example values, "
                            f"got {values.shape[1]}")
        if np.unique(indices).size != indices.size:
            raise UserError(f"{self.name}: the evaluation indices repeat a test example; each must appear once")
        bad = ~np.isfinite(values)
        if bad.any():
            seed, col = np.argwhere(bad)[0]
            raise UserError(f"{self.name}: {int(bad.sum())} per-example value(s) are NaN or infinite (the first: "
                            f"seed row {seed}, test example {int(indices[col])}, value {values[seed, col]}); "
                            "a mean over these examples is undefined, so the model cannot be compared paired. "
                            "Fix the model's evaluation or leave it out of the comparison.")
        order = np.argsort(indices, kind="stable")
        object.__setattr__(self, "values", np.ascontiguousarray(values[:, order]))
        object.__setattr__(self, "indices", indices[order].astype(np.int64))
        self.values.setflags(write=False)
        self.indices.setflags(write=False)

    @classmethod
    def from_seeds(cls, name: str, seeds: Iterable[Tuple[np.ndarray, np.ndarray]]) -> "PerExample":
        """Stack the seeds of one model, each given as ``(indices, values)`` with values of shape (examples,),
        as each job stores them. Every seed must have been evaluated on the same test examples (in any
        order); otherwise :class:`UserError`."""
        rows, reference = [], None
        for k, (indices, values) in enumerate(seeds):
            one = cls(name, np.asarray(values, dtype=np.float64).reshape(1, -1), indices)
            if reference is None:
                reference = one.indices
            elif not np.array_equal(one.indices, reference):
                raise UserError(f"{name}: seed {k} was evaluated on other test examples than seed 0 "
                                f"({_overlap(reference, one.indices)}); every seed must use the same evaluation "
                                "subset (same split, subset size and subset seed)")
            rows.append(one.values[0])
        if reference is None:
            raise UserError(f"{name}: no seeds given")
        return cls(name, np.stack(rows), reference)

    @property
    def seeds(self) -> int:
        return self.values.shape[0]

    @property
    def examples(self) -> int:
        return self.values.shape[1]

    def seed_means(self) -> np.ndarray:
        """The mean over examples of each seed: the number a one-seed cell shows, shape (seeds,)."""
        return self.values.mean(axis=1)

    def seed_stderrs(self) -> np.ndarray:
        """Each seed's test-set standard error, sd over examples / sqrt(examples), shape (seeds,)."""
        return self.values.std(axis=1, ddof=1) / np.sqrt(self.examples)

    def example_means(self) -> np.ndarray:
        """The mean over seeds of each example, shape (examples,)."""
        return self.values.mean(axis=0)

    def interaction_variance(self) -> float:
        """The seed x example interaction variance: the residual mean square of the two-way table
        (seeds x examples) after removing seed and example means, sum(r^2) / ((S - 1)(N - 1)); it is how
        much one seed's value of an example differs from another seed's beyond their mean offset. 0 with
        one seed (no second seed to differ from)."""
        if self.seeds < 2:
            return 0.0
        v = self.values
        resid = v - v.mean(axis=1, keepdims=True) - v.mean(axis=0, keepdims=True) + v.mean()
        return float((resid ** 2).sum() / ((self.seeds - 1) * (self.examples - 1)))


def _overlap(a: np.ndarray, b: np.ndarray) -> str:
    common = np.intersect1d(a, b).size
    return f"{a.size} examples against {b.size}, {common} in common"


def check_aligned(a: PerExample, b: PerExample) -> None:
    """Check that two models were evaluated on the same test examples (both are kept sorted by index, so
    equal index sets mean aligned columns); otherwise :class:`UserError` saying how they differ."""
    if not np.array_equal(a.indices, b.indices):
        raise UserError(f"{a.name} and {b.name} were evaluated on different test examples "
                        f"({_overlap(a.indices, b.indices)}): per-example values pair only on the same "
                        "evaluation subset. Evaluate both with the same split, subset size and subset seed.")
