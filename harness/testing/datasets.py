"""Conformance checks of a dataset: its splits against its declarations, and its true density.

``available``   for user-supplied data, ``check(root)`` finds the files (otherwise every other check is
                skipped with what is missing: the kit never downloads).
``splits``      ``load(root)`` gives ``Splits`` whose train, val and test are non-empty ``Split``s with
                ``x`` float32 of shape (N, *event_shape).
``values``      the values are of the declared kind: finite (continuous), integer levels 0..K-1 with
                K = ``levels`` (discrete), 0 or 1 (binary).
``labels``      with ``num_classes`` C > 0 every split has int64 labels 0..C-1, one per example; with
                C = 0 none has labels.
``provenance``  two loads give the same provenance hash (:func:`harness.data.provenance_hash`): the data
                is the same every time, so results stay comparable.
``density``     ``log_density`` is finite on the test split and integrates to 1: the 2-D midpoint rule
                over the training data's range widened by a quarter of it on each side (the mass
                outside is negligible for data drawn from the density), within the quadrature's error
                estimate plus 0.01; for a discrete space of at most 4,096 states, the probabilities of
                every state sum to 1 within 1e-6.
``entropy``     the declared ``entropy`` matches the Monte-Carlo estimate -mean log_density(train) within
                4 standard errors (the estimate's and the declared ``entropy_stderr`` combined).
"""

from __future__ import annotations

import math

import torch

from harness.contracts import DataKind, Split, Splits
from harness.data import provenance_hash
from harness.testing.density import box, enumerable, enumeration_sum, grid_integral
from harness.testing.models import sample_problem
from harness.testing.results import PASSED, SKIPPED, CheckFailed, CheckResult, NotApplicable, run_check

CHECKS = ("available", "splits", "values", "labels", "provenance", "density", "entropy")
QUADRATURE_FLOOR = 0.01
ENUMERATION_TOLERANCE = 1e-6
ENTROPY_SIGMAS = 4.0
SPLIT_NAMES = ("train", "val", "test")


class DatasetChecks:
    def __init__(self, spec, data_root=None):
        self.spec = spec
        self.root = data_root
        self.subject = f"dataset:{spec.name}"
        self.splits = None

    def result(self, name, status, message, seconds=0.0) -> CheckResult:
        return CheckResult(self.subject, name, status, message, seconds=seconds)

    def run(self) -> list:
        missing = self.spec.check(self.root) if self.spec.check is not None else None
        if missing:
            why = f"the data is not available: {missing}"
            return [self.result(name, SKIPPED, why) for name in CHECKS]
        out = [self.result("available", PASSED, "user-supplied files found" if self.spec.check else "needs no user-supplied files")]
        out.append(self._run("splits", self.check_splits))
        if out[-1].status != PASSED:
            return out + [self.result(name, SKIPPED, "the splits did not load as declared") for name in CHECKS[2:]]
        for name in CHECKS[2:]:
            out.append(self._run(name, getattr(self, f"check_{name}")))
        return out

    def _run(self, name, check) -> CheckResult:
        return self.result(name, *run_check(check))

    def each(self):
        for name in SPLIT_NAMES:
            yield name, getattr(self.splits, name)

    # ------------------------------------------------------------------ checks
    def check_splits(self) -> str:
        splits = self.spec.load(self.root)
        if not isinstance(splits, Splits):
            raise CheckFailed(f"load() returned {type(splits).__name__}, not harness.contracts.Splits")
        self.splits = splits
        sizes = []
        want = tuple(self.spec.event_shape)
        for name, split in self.each():
            if not isinstance(split, Split):
                raise CheckFailed(f"{name} is {type(split).__name__}, not harness.Split")
            x = split.x
            if not isinstance(x, torch.Tensor) or x.dtype != torch.float32:
                raise CheckFailed(f"{name}.x is {getattr(x, 'dtype', type(x).__name__)}, expected a float32 tensor")
            if tuple(x.shape[1:]) != want or len(x) == 0:
                raise CheckFailed(f"{name}.x has shape {tuple(x.shape)}, expected (N > 0, {', '.join(map(str, want))})")
            sizes.append(str(len(x)))
        return f"{'/'.join(sizes)} train/val/test examples of shape {want}, float32"

    def check_values(self) -> str:
        for name, split in self.each():
            problem = sample_problem(split.x, len(split), self.spec)
            if problem:
                raise CheckFailed(f"{name}: {problem} for {self.spec.kind.value} data"
                                  + (f" with {self.spec.levels} levels" if self.spec.levels else ""))
        if self.spec.kind is DataKind.CONTINUOUS:
            return "finite continuous values"
        used = sorted({int(v) for v in self.splits.train.x.unique().tolist()})
        return f"integer levels within 0..{self.spec.levels - 1} (train uses {len(used)} of {self.spec.levels})"

    def check_labels(self) -> str:
        classes = int(self.spec.num_classes)
        for name, split in self.each():
            y = split.y
            if classes == 0:
                if y is not None:
                    raise CheckFailed(f"{name} has labels but the dataset declares num_classes=0")
                continue
            if y is None:
                raise CheckFailed(f"{name} has no labels but the dataset declares {classes} classes")
            if y.dtype != torch.int64 or tuple(y.shape) != (len(split),):
                raise CheckFailed(f"{name}.y is {y.dtype} of shape {tuple(y.shape)}, expected int64 ({len(split)},)")
            if len(y) and (int(y.min()) < 0 or int(y.max()) >= classes):
                raise CheckFailed(f"{name}.y spans {int(y.min())}..{int(y.max())}, outside 0..{classes - 1}")
        if classes == 0:
            return "unlabelled, as declared"
        seen = len(torch.unique(self.splits.train.y))
        return f"int64 labels within 0..{classes - 1} in every split (train has {seen} classes)"

    def check_provenance(self) -> str:
        extra = f"{self.spec.name}:{self.spec.version}"
        first = provenance_hash(self.splits, extra)
        second = provenance_hash(self.spec.load(self.root), extra)
        if first != second:
            raise CheckFailed(f"two loads give different data (provenance {first[:12]} then {second[:12]}): load() "
                              "must be deterministic (fix its random seeds)")
        return f"two loads give provenance {first[:12]}"

    def check_density(self) -> str:
        if self.spec.log_density is None:
            raise NotApplicable(f"{self.spec.name} declares no true log-density")
        test = self.splits.test.x
        lp = self.spec.log_density(test)
        if tuple(lp.shape) != (len(test),):
            raise CheckFailed(f"log_density of the test split has shape {tuple(lp.shape)}, expected ({len(test)},)")
        bad = int((~torch.isfinite(lp)).sum())
        if bad:
            raise CheckFailed(f"log_density is not finite on {bad} of {len(test)} test examples drawn from it")
        spec = self.spec
        if spec.kind is DataKind.CONTINUOUS and spec.dim == 2:
            lo, hi = box(self.splits.train.x)
            integral = grid_integral(lambda x: spec.log_density(x).double(), lo, hi, spec.event_shape)
            tolerance = integral.error + QUADRATURE_FLOOR
        elif spec.kind is not DataKind.CONTINUOUS and enumerable(spec.levels, spec.dim):
            integral = enumeration_sum(lambda x: spec.log_density(x).double(), int(spec.levels), spec.event_shape)
            tolerance = ENUMERATION_TOLERANCE
        else:
            raise NotApplicable(f"finite on the test split; {spec.name} ({spec.kind.value}, {spec.dim} dimensions) is "
                                "neither 2-D continuous nor a tiny discrete space, so its mass is not integrated")
        if abs(integral.value - 1) > tolerance:
            raise CheckFailed(f"the true density's mass over {integral.what} is {integral.value:.5f}, expected 1 "
                              f"within {tolerance:.3g}")
        return f"mass {integral.value:.5f} over {integral.what} (tolerance {tolerance:.3g})"

    def check_entropy(self) -> str:
        if self.spec.entropy is None:
            raise NotApplicable(f"{self.spec.name} declares no entropy")
        if self.spec.log_density is None:
            raise NotApplicable(f"{self.spec.name} declares an entropy but no log_density to estimate it from")
        lp = self.spec.log_density(self.splits.train.x).double()
        estimate = float(-lp.mean())
        se = float(lp.std() / math.sqrt(len(lp))) if len(lp) > 1 else 0.0
        combined = math.sqrt(se**2 + float(self.spec.entropy_stderr) ** 2)
        tolerance = ENTROPY_SIGMAS * combined + 1e-6 * max(1.0, abs(self.spec.entropy))
        gap = abs(estimate - self.spec.entropy)
        text = (f"declared {self.spec.entropy:.5f} ± {self.spec.entropy_stderr:.2g}, Monte Carlo over the "
                f"{len(lp)} training examples {estimate:.5f} ± {se:.2g}")
        if gap > tolerance:
            raise CheckFailed(f"{text}: {gap / max(combined, 1e-300):.1f} standard errors apart "
                              f"(allowed {ENTROPY_SIGMAS:g})")
        return text


def check_dataset(spec, data_root=None) -> list:
    return DatasetChecks(spec, data_root).run()
