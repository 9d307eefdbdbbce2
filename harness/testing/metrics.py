"""Conformance check of a metric: every measurement it emits is declared.

``outputs_declared``: the metric's compute step is run, as the runner runs it, on small fitted models
it applies to, and every measurement it returns must be a ``harness.Measurement`` that
``MetricSpec.bind`` accepts (declared name, unit and direction as declared, an estimator, the protocol
settings its output declares, per-example values that average to the value) with a finite value and a
finite, non-negative standard error where it gives one. A metric that raises
``MetricSkipped`` on a pair is not failed for it; one that raises anything else is.

The pairs, found in this order until one applies:

1. the kit's reference models (:mod:`harness.testing.reference`: one with an exact likelihood and
   conditional sampling, one sample-only) on the kit's tiny datasets, one dataset per data kind
   (images first, so per-image outputs appear);
2. the registered models on the kit's tiny datasets (the first pair by model name, fitted with the
   profile's hyperparameters), for metrics that apply to particular models;
3. the reference models on the registered datasets that are available (smallest first), for metrics
   that apply to particular datasets.

A metric that applies to none (e.g. one that needs a GPU on a CPU-only machine) is skipped with the
reasons.
"""

from __future__ import annotations

import math
import tempfile
import time
from pathlib import Path
from typing import Optional

import torch

from harness.contracts import (DataKind, Dataset, FitContext, Measurement, MetricContext, MetricSkipped,
                               UndeclaredMeasurement)
from harness.data import provenance_hash
from harness.profiles import get_profile
from harness.testing.reference import RAW_FEATURES, REFERENCE_MODELS
from harness.testing.results import FAILED, PASSED, SKIPPED, CheckResult
from harness.testing.tiny import tiny_datasets

CHECKS = ("outputs_declared",)
KINDS = (DataKind.CONTINUOUS, DataKind.DISCRETE, DataKind.BINARY)


def _kit_datasets() -> list:
    """One tiny dataset per kind: the image form where there is one (per-image outputs such as bits
    per dimension), else the vector."""
    out = []
    for kind in KINDS:
        sets = tiny_datasets(kind)
        out.append(next((d for d in sets if d.is_image and kind is not DataKind.CONTINUOUS), sets[0]))
    return out


class MetricBench:
    """Fitted models and materialised datasets shared by the metric checks of one session."""

    def __init__(self, host, profile: str = "smoke", overrides=None, seed: int = 0, device="cpu", data_root=None):
        self.host = host
        self.profile = get_profile(profile)
        self.overrides = overrides  # callable(spec, dataset_name) -> [(key, value, source)]
        self.seed = seed
        self.device = torch.device(device)
        self.data_root = data_root
        self._cache_dir = tempfile.TemporaryDirectory(prefix="harness-check-")
        self.cache_dir = Path(self._cache_dir.name)
        self.run_cache: dict = {}
        self._datasets: dict = {}
        self._models: dict = {}

    def close(self) -> None:
        self._cache_dir.cleanup()

    def dataset(self, spec) -> Dataset:
        if spec.name not in self._datasets:
            splits = spec.load(self.data_root)
            self._datasets[spec.name] = Dataset(spec, splits, provenance_hash(splits, f"{spec.name}:{spec.version}"))
        return self._datasets[spec.name]

    def fitted(self, model_spec, dataset: Dataset):
        key = (model_spec.name, dataset.name)
        if key not in self._models:
            overrides = self.overrides(model_spec, dataset.name) if self.overrides else []
            hparams = model_spec.resolve_hparams(self.profile.name, dataset.spec, overrides)
            torch.manual_seed(self.seed)
            model = model_spec.factory(dataset.spec, dict(hparams))
            model.to(self.device)
            fit = FitContext(self.device, self.seed)
            model.fit(dataset.train, dataset.val, fit)
            fit.finish()
            self._models[key] = (model, fit)
        return self._models[key]

    def context(self, model_spec, dataset: Dataset) -> MetricContext:
        model, fit = self.fitted(model_spec, dataset)
        extractors = {**self.host.registry.feature_extractors, RAW_FEATURES.name: RAW_FEATURES}
        return MetricContext(model=model, model_spec=model_spec, dataset=dataset, profile=self.profile,
                             device=self.device, seed=self.seed, fit=fit, cache_dir=self.cache_dir,
                             data_root=self.data_root, feature_extractors=extractors, run_cache=self.run_cache)

    def registered_datasets(self) -> list:
        """Available registered datasets, smallest first."""
        specs = sorted(self.host.registry.datasets.values(), key=lambda s: (s.dim, s.name))
        return [s for s in specs if s.check is None or not s.check(self.data_root)]


def _compatible(model_spec, dataset_spec) -> bool:
    """Whether a registered model accepts a dataset (one whose ``accepts`` raises does not)."""
    try:
        return model_spec.incompatibility(dataset_spec) is None
    except Exception:
        return False


def pairs_for(metric, bench: MetricBench) -> tuple:
    """((model spec, dataset spec) pairs to run the metric on, [reasons no pair of a stage applied])."""
    reasons = []
    stages = (
        lambda: [(m, d) for m in REFERENCE_MODELS for d in _kit_datasets()],
        lambda: [(m, d) for m in sorted(bench.host.registry.models.values(), key=lambda s: s.name)
                 for d in _kit_datasets() if _compatible(m, d)],
        lambda: [(m, d) for m in REFERENCE_MODELS for d in bench.registered_datasets()],
    )
    for number, make in enumerate(stages):
        stage = make()
        chosen = [(m, d) for m, d in stage if metric.incompatibility(m, d) is None]
        if chosen:
            return (chosen if number == 0 else chosen[:1]), reasons
        for m, d in stage[:1] if number else stage:
            reasons.append(f"{m.name} on {d.name}: {metric.incompatibility(m, d)}")
    return [], reasons


def _grouped(lines: list) -> str:
    """"where: why" lines with the same why told once: "why (where, where)"."""
    by_reason: dict = {}
    for line in lines:
        where, _, why = line.partition(": ")
        by_reason.setdefault(why, []).append(where)
    return "; ".join(f"{why} ({', '.join(wheres)})" for why, wheres in by_reason.items())


def measurement_problem(metric, m) -> Optional[str]:
    if not isinstance(m, Measurement):
        return f"returned {type(m).__name__}, not harness.Measurement"
    try:
        metric.bind(m)
    except UndeclaredMeasurement as exc:
        return str(exc)
    if not math.isfinite(m.value):
        return f"{m.metric} is {m.value}"
    if m.stderr is not None and not (math.isfinite(m.stderr) and m.stderr >= 0):
        return f"{m.metric} has standard error {m.stderr}"
    return None


def check_metric(metric, bench: MetricBench) -> list:
    subject = f"metric:{metric.name}"
    start = time.perf_counter()
    pairs, reasons = pairs_for(metric, bench)
    if not pairs:
        return [CheckResult(subject, CHECKS[0], SKIPPED, "applies to none of the kit's pairs: " + _grouped(reasons),
                            seconds=time.perf_counter() - start)]
    emitted, skipped, problems = {}, [], []
    for model_spec, dataset_spec in pairs:
        where = f"{model_spec.name} on {dataset_spec.name}"
        try:
            out = metric.compute(bench.context(model_spec, bench.dataset(dataset_spec)))
        except MetricSkipped as exc:
            skipped.append(f"{where}: {exc}")
            continue
        except Exception as exc:
            problems.append(f"{where}: raised {type(exc).__name__}: {exc}")
            continue
        if out is not None and not isinstance(out, (list, tuple)):
            problems.append(f"{where}: compute() returned {type(out).__name__}, not a list of harness.Measurement")
            continue
        for m in out or []:
            problem = measurement_problem(metric, m)
            if problem:
                problems.append(f"{where}: {problem}")
            else:
                emitted.setdefault(m.id, []).append(where)
    seconds = time.perf_counter() - start
    if problems:
        return [CheckResult(subject, CHECKS[0], FAILED, "; ".join(problems), seconds=seconds)]
    if not emitted and skipped:
        return [CheckResult(subject, CHECKS[0], SKIPPED, "skipped itself: " + _grouped(skipped), seconds=seconds)]
    ran = ", ".join(f"{m.name} on {d.name}" for m, d in pairs)
    text = (f"emitted {', '.join(sorted(emitted))}, all declared" if emitted else "emitted nothing") + f" ({ran})"
    if skipped:
        text += "; skipped itself: " + _grouped(skipped)
    return [CheckResult(subject, CHECKS[0], PASSED, text, seconds=seconds)]
