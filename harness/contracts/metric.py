"""The metric contract: MetricSpec, its sizes per profile, MetricContext and feature extractors.

:class:`MetricSpec` is what a metric registers, :class:`ProfileSizes` the sizes it declares per
profile, :class:`MetricContext` what its compute step receives, :class:`FeatureExtractorSpec` a
feature extractor for the fidelity metrics."""

from __future__ import annotations

import math
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Optional, Sequence

import torch

from harness.contracts.datasets import Dataset, DatasetSpec, Split
from harness.contracts.evaluation import EVALUATION_SUBSET_SEED, evaluation_indices
from harness.contracts.fitting import FitContext
from harness.contracts.kinds import Capability, DataKind
from harness.contracts.model import Model, ModelSpec
from harness.contracts.neighbours import NeighbourQuery, Neighbours
from harness.contracts.outputs import ExampleValues, Measurement, Output, UndeclaredMeasurement, checked_protocol
from harness.contracts.variants import variant_identity
from harness.errors import UserError


@dataclass
class MetricContext:
    """What a metric's compute step receives for one job."""

    model: Model
    model_spec: ModelSpec
    dataset: Dataset
    profile: "Any"  # harness.profiles.Profile
    device: torch.device
    seed: int
    fit: Optional[FitContext] = None  # None when the model was loaded (saved weights), not fitted in this job
    cache_dir: Optional[Any] = None  # pathlib.Path for on-disk caches shared across runs
    data_root: Optional[Any] = None  # pathlib.Path: where user-supplied data and weights live
    feature_extractors: Mapping[str, Any] = field(default_factory=dict)  # name -> FeatureExtractorSpec
    run_cache: dict = field(default_factory=dict)  # shared across the jobs a worker runs
    phases: dict = field(default_factory=dict)  # seconds of named steps of the job (see timed)

    @contextmanager
    def timed(self, name: str):
        """Add the wall seconds of the ``with`` block to ``phases[name]``: a step several metrics share
        (drawing the job's samples, reference features), which the job's details report by name beside
        each metric's own seconds (the metric that ran it first counts it too)."""
        started = time.perf_counter()
        try:
            yield
        finally:
            self.phases[name] = round(self.phases.get(name, 0.0) + time.perf_counter() - started, 4)

    def generator(self, offset: int = 0) -> torch.Generator:
        return torch.Generator(device="cpu").manual_seed(self.seed * 1_000_003 + offset)

    def evaluation_split(self, n: Optional[int] = None, split: str = "test") -> Split:
        """The examples a metric evaluates on: ``split`` (test by default) limited to ``n`` examples
        (default: the profile's ``eval_examples``; 0 means all) by :func:`evaluation_indices`. Every
        metric takes its data from here, so the numbers of one table come from the same examples."""
        data = getattr(self.dataset, split)
        idx = self.evaluation_indices(n, split)
        if len(idx) == len(data):
            return data
        return Split(data.x[idx], None if data.y is None else data.y[idx])

    def evaluation_indices(self, n: Optional[int] = None, split: str = "test") -> torch.Tensor:
        """Which examples of ``split`` :meth:`evaluation_split` gives, in its order (indices into the split)."""
        limit = self.profile.eval_examples if n is None else n
        return evaluation_indices(len(getattr(self.dataset, split)), limit)

    def evaluation_protocol(self, n: Optional[int] = None, split: str = "test") -> dict:
        """The protocol settings of :meth:`evaluation_split`: ``split``, ``examples`` (how many) and
        ``subset_seed`` (the fixed permutation's seed, None when the whole split is used)."""
        size, idx = len(getattr(self.dataset, split)), self.evaluation_indices(n, split)
        return {"split": split, "examples": int(len(idx)),
                "subset_seed": None if len(idx) == size else EVALUATION_SUBSET_SEED}

    def per_example(self, values, n: Optional[int] = None, split: str = "test") -> ExampleValues:
        """``values`` (one per example of :meth:`evaluation_split` with the same ``n`` and ``split``, in
        its order) as a measurement's :class:`ExampleValues`."""
        return ExampleValues(values, self.evaluation_indices(n, split))


@dataclass(frozen=True)
class ProfileSizes:
    """The sizes a metric needs under each profile (a sample count, timed repeats, time budgets ...),
    declared by the metric: ``{profile: {size: value}}``, every profile with the same size names.

    The compute step reads them with :meth:`of`. A profile the table does not list takes the sizes of
    ``fallback`` when the declaration names one; without a fallback it is an error that names the
    profile and the profiles the table knows.
    """

    table: Mapping[str, Mapping[str, Any]]
    fallback: Optional[str] = None

    def __post_init__(self):
        table = {str(profile): dict(sizes) for profile, sizes in dict(self.table).items()}
        if not table:
            raise ValueError("ProfileSizes declares no profile")
        names = {frozenset(sizes) for sizes in table.values()}
        if len(names) > 1:
            raise ValueError("every profile of a ProfileSizes declares the same sizes; got "
                             + "; ".join(f"{p}: {', '.join(sorted(s))}" for p, s in table.items()))
        if self.fallback is not None and self.fallback not in table:
            raise ValueError(f"the fallback profile {self.fallback!r} is not in the table ({', '.join(table)})")
        object.__setattr__(self, "table", table)

    @property
    def profiles(self) -> tuple:
        return tuple(self.table)

    def of(self, profile) -> Mapping[str, Any]:
        """The sizes for ``profile`` (a :class:`harness.profiles.Profile` or a profile's name)."""
        name = getattr(profile, "name", profile)
        if name in self.table:
            return dict(self.table[name])
        if self.fallback is not None:
            return dict(self.table[self.fallback])
        raise UserError(f"sizes are declared for the profiles {', '.join(self.table)}, not for {name!r}: declare "
                        "its sizes, or a fallback profile")


@dataclass
class MetricSpec:
    """A registered metric.

    ``compute(ctx: MetricContext)`` returns a list of :class:`Measurement` (a metric may report
    several related numbers, e.g. ``nll`` and ``bpd``).
    ``outputs``: an :class:`Output` for every measurement name it can emit; the runner refuses
    (as a failed metric) a measurement that is not declared. A metric with one output may give
    ``unit`` and ``higher_is_better`` instead, which declare ``Output(name, unit, higher_is_better)``.
    ``requires``: capabilities the model must declare. ``data_kinds``: kinds it applies to (empty:
    all). ``applies(model_spec, dataset_spec)``: optional extra check returning None or a reason.
    ``sizes``: what the compute step needs per profile (:class:`ProfileSizes`, or its table as a
    mapping), e.g. a sample count; the compute step reads them with ``sizes.of(ctx.profile)``.
    ``neighbours(query: NeighbourQuery) -> Neighbours``: optional; a metric that measures how close
    samples lie to the training split offers each sample's nearest training example and its copy
    threshold, which the report draws for the runs that measured it (:mod:`harness.contracts.neighbours`).
    """

    name: str
    compute: Callable[[MetricContext], list]
    outputs: Sequence[Output] = ()
    requires: Sequence[Capability] = ()
    data_kinds: Sequence[DataKind] = ()
    applies: Optional[Callable[[ModelSpec, DatasetSpec], Optional[str]]] = None
    description: str = ""
    version: str = "1"
    unit: Optional[str] = None
    higher_is_better: Optional[bool] = None
    sizes: Optional[ProfileSizes] = None
    neighbours: Optional[Callable[[NeighbourQuery], Neighbours]] = None

    def __post_init__(self):
        if isinstance(self.sizes, Mapping):
            self.sizes = ProfileSizes(self.sizes)
        if self.sizes is not None and not isinstance(self.sizes, ProfileSizes):
            raise TypeError(f"metric {self.name!r}: sizes must be a harness.contracts.ProfileSizes, not "
                            f"{type(self.sizes).__name__}")
        self.requires = frozenset(Capability(c) for c in self.requires)
        self.data_kinds = frozenset(DataKind(k) for k in self.data_kinds)
        outputs = list(self.outputs)
        if not outputs:
            if self.unit is None or self.higher_is_better is None:
                raise ValueError(f"metric {self.name!r} declares no outputs (give outputs=[Output(...)], or unit "
                                 "and higher_is_better for a single output)")
            outputs = [Output(self.name, self.unit, bool(self.higher_is_better))]
        names = [o.name for o in outputs]
        if len(set(names)) != len(names):
            raise ValueError(f"metric {self.name!r} declares an output twice: {names}")
        self.outputs = tuple(outputs)

    @property
    def measures_samples_only(self) -> bool:
        """True when the metric needs samples and not the likelihood: it measures the sampler, so the
        runner runs it once more for each of a model's sampling variants."""
        return Capability.SAMPLE in self.requires and Capability.LOG_LIKELIHOOD not in self.requires

    @property
    def output_names(self) -> tuple:
        return tuple(o.name for o in self.outputs)

    def output(self, name: str) -> Optional[Output]:
        return next((o for o in self.outputs if o.name == name), None)

    def bind(self, m: Measurement) -> Measurement:
        """``m`` checked against its declaration, with unit, direction, estimator and identity filled in;
        :class:`UndeclaredMeasurement` when it is not declared or contradicts the declaration."""
        out = self.output(m.metric)
        if out is None:
            raise UndeclaredMeasurement(f"metric {self.name!r} emitted {m.metric!r}, which it does not declare "
                                        f"(declared: {', '.join(self.output_names)})")
        for attr, declared in (("unit", out.unit), ("higher_is_better", out.higher_is_better)):
            given = getattr(m, attr)
            if given is not None and given != declared:
                raise UndeclaredMeasurement(f"metric {self.name!r}: {m.metric} has {attr} {given!r}, declared "
                                            f"{declared!r}")
        if m.estimator is None and out.estimator is None:
            raise UndeclaredMeasurement(f"metric {self.name!r}: {m.metric} gives no estimator and its declaration "
                                        "has none")
        try:
            m.protocol = checked_protocol(m.protocol, f"metric {self.name!r}: {m.metric}")
        except ValueError as exc:
            raise UndeclaredMeasurement(str(exc)) from None
        missing = [k for k in out.protocol if k not in m.protocol]
        if missing:
            raise UndeclaredMeasurement(f"metric {self.name!r}: {m.metric} declares the protocol settings "
                                        f"{', '.join(out.protocol)} but its measurement does not record "
                                        f"{', '.join(missing)}")
        if m.per_example is not None:
            _check_per_example(self.name, m)
        m.unit, m.higher_is_better = out.unit, out.higher_is_better
        m.estimator = m.estimator or out.estimator
        m.id = out.identity(m.n)
        if m.variant is not None:
            m.id = variant_identity(m.id, m.variant)
            m.details = {**m.details, "variant": m.variant}
        return m

    def incompatibility(self, model: ModelSpec, dataset: DatasetSpec) -> Optional[str]:
        missing = self.requires - model.capabilities
        if missing:
            return f"{model.name} lacks {', '.join(sorted(c.value for c in missing))}"
        if self.data_kinds and dataset.kind not in self.data_kinds:
            return f"{self.name} does not apply to {dataset.kind.value} data"
        if self.applies is not None:
            return self.applies(model, dataset)
        return None


# How far the mean of a measurement's per-example values may sit from its value (relative to max(1, |value|)).
PER_EXAMPLE_TOLERANCE = 1e-6


def _check_per_example(metric: str, m: Measurement) -> None:
    """A measurement's per-example values must be what the value averages: their mean is the value."""
    per = m.per_example
    if not isinstance(per, ExampleValues):
        raise UndeclaredMeasurement(f"metric {metric!r}: {m.metric}'s per_example must be ExampleValues "
                                    f"(MetricContext.per_example), not {type(per).__name__}")
    if per.values.size < 1 or (m.n is not None and per.values.size != m.n):
        raise UndeclaredMeasurement(f"metric {metric!r}: {m.metric} has {per.values.size} per-example values for "
                                    f"n={m.n}")
    if math.isfinite(m.value) and not abs(per.mean - m.value) <= PER_EXAMPLE_TOLERANCE * max(1.0, abs(m.value)):
        raise UndeclaredMeasurement(f"metric {metric!r}: the mean of {m.metric}'s per-example values is {per.mean!r}, "
                                    f"its value {m.value!r}: per-example values must average to the value")


@dataclass
class FeatureExtractorSpec:
    """A feature extractor for fidelity metrics (and classifier-based metrics).

    ``build(dataset: Dataset, device)`` (builders may also accept a ``data_root`` keyword, passed where
    they declare it) returns an extractor object with
      - ``features(x: Tensor) -> Tensor`` of shape (N, F), taking data-space input
        (N, *event_shape) exactly as ``Dataset`` splits and ``Model.sample`` give it;
      - ``fingerprint: str``, a hash of its weights and configuration, stamped on cached statistics;
      - optionally ``classify(x) -> Tensor`` of logits (N, num_classes) for classifier extractors.
    ``check(data_root)`` returns None if usable, otherwise the reason it is not (e.g. a missing
    weights file and how to supply it); metrics then skip with that reason.
    """

    name: str
    build: Callable[[Any, Any], Any]
    check: Optional[Callable[[Any], Optional[str]]] = None
    description: str = ""
    version: str = "1"
