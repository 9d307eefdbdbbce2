"""The contracts of DESIGN.md as Python types: dataset, model, metric, measurement.

Everything a plugin hands to the host, and everything the host hands back, is one of these.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Callable, Mapping, Optional, Sequence

import torch


class UserError(Exception):
    """A mistake the user can fix (bad name, missing file, bad option).

    The CLI prints its message without a traceback and exits with code 2.
    """


class MetricSkipped(Exception):
    """Raised by a metric's compute step when it cannot apply to this job for a reason only known at
    run time (e.g. a feature extractor's weights file is missing). The runner records the metric as
    skipped with ``str(exc)`` as the reason, not as a failure."""


class DataKind(str, Enum):
    CONTINUOUS = "continuous"
    DISCRETE = "discrete"  # integer levels 0..K-1 (``DatasetSpec.levels`` = K)
    BINARY = "binary"  # values in {0, 1}

    def __str__(self) -> str:  # pragma: no cover - cosmetic
        return self.value


class LikelihoodKind(str, Enum):
    EXACT = "exact"  # the model's log-likelihood, computed exactly
    BOUND = "bound"  # a lower bound on log-likelihood (ELBO, IWAE, dequantised density)
    ESTIMATE = "estimate"  # a stochastic estimate (AIS, Parzen window)

    def __str__(self) -> str:  # pragma: no cover - cosmetic
        return self.value


class Capability(str, Enum):
    SAMPLE = "sample"
    CONDITIONAL = "conditional"  # sample(n, labels=...) honours labels
    LOG_LIKELIHOOD = "log_likelihood"

    def __str__(self) -> str:  # pragma: no cover - cosmetic
        return self.value


# Estimator marks used in measurements. The first three are the likelihood kinds.
ESTIMATORS = ("exact", "bound", "estimate", "measured", "statistic")


# --------------------------------------------------------------------------- datasets


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


# --------------------------------------------------------------------------- models


@dataclass
class LogLikelihood:
    """Per-example log-likelihoods in nats, with their kind.

    ``values``: tensor (N,). ``kind``: exact, bound or estimate. ``shared_stderr``: an uncertainty
    common to every example (e.g. the standard error of an AIS estimate of log Z), added in
    quadrature to the across-example standard error of the mean. ``details``: free-form
    (e.g. ``{"k": 64}`` for IWAE, ``{"dequantized": True}``).
    """

    values: torch.Tensor
    kind: LikelihoodKind
    shared_stderr: float = 0.0
    details: dict = field(default_factory=dict)

    def __post_init__(self):
        self.kind = LikelihoodKind(self.kind)


class FitContext:
    """What the runner hands to ``Model.fit``: device, seed, deadline and progress reporting.

    Models call :meth:`step` once per optimisation step with the number of examples it used;
    it drives the progress bar and the training-throughput figures. :meth:`should_stop` is True
    once the job's time budget is spent; a model should then stop training early.
    """

    def __init__(
        self,
        device: torch.device | str = "cpu",
        seed: int = 0,
        total_steps: Optional[int] = None,
        deadline: Optional[float] = None,
        progress: Optional[Callable[[int, dict], None]] = None,
    ):
        self.device = torch.device(device)
        self.seed = seed
        self.generator = torch.Generator(device="cpu").manual_seed(seed)
        self.total_steps = total_steps
        self.deadline = deadline
        self._progress = progress
        self.steps = 0
        self.examples = 0
        self.started = time.perf_counter()
        self.ended: Optional[float] = None
        self.scalars: dict = {}

    def step(self, examples: int, **scalars: float) -> None:
        self.steps += 1
        self.examples += int(examples)
        if scalars:
            self.scalars = {k: float(v) for k, v in scalars.items()}
        if self._progress is not None:
            self._progress(self.steps, self.scalars)

    def should_stop(self) -> bool:
        return self.deadline is not None and time.monotonic() >= self.deadline

    def finish(self) -> None:
        """Stop the clock (the runner calls this when ``fit`` returns)."""
        if self.ended is None:
            self.ended = time.perf_counter()

    @property
    def seconds(self) -> float:
        """Seconds spent in ``fit``: up to :meth:`finish` once it was called, else up to now."""
        return (self.ended if self.ended is not None else time.perf_counter()) - self.started


class Model:
    """Base class for generative models. Subclasses implement what their spec declares.

    - ``fit(train, val, ctx)``: train on ``train`` (``harness.Split``); ``val`` may be used for early
      stopping or model selection, never ``test``.
    - ``sample(n, generator, labels=None)``: ``n`` samples in data space, shape (n, *event_shape);
      discrete data as integer levels, binary as 0/1.
    - ``log_likelihood(x, labels=None)``: :class:`LogLikelihood` per example in nats.
    - ``device``: where its parameters live; the runner calls ``to(device)`` before fitting.
    """

    device = torch.device("cpu")

    def to(self, device) -> "Model":
        self.device = torch.device(device)
        for value in vars(self).values():
            if isinstance(value, torch.nn.Module):
                value.to(self.device)
        return self

    def fit(self, train: Split, val: Split, ctx: FitContext) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def sample(self, n: int, generator: torch.Generator, labels: Optional[torch.Tensor] = None) -> torch.Tensor:
        raise NotImplementedError(f"{type(self).__name__} does not sample")

    def log_likelihood(self, x: torch.Tensor, labels: Optional[torch.Tensor] = None) -> LogLikelihood:
        raise NotImplementedError(f"{type(self).__name__} gives no likelihood")

    def modules(self) -> list:
        """The torch modules that make up the model (for FLOP counting and memory figures)."""
        return [v for v in vars(self).values() if isinstance(v, torch.nn.Module)]


@dataclass
class ModelSpec:
    """A registered model factory and its declarations.

    ``factory(dataset_spec, hparams)`` builds an unfitted :class:`Model`.
    ``defaults``: hyperparameters per profile name (``smoke``, ``quick``, ``full``); a profile not
    listed falls back to ``quick``.
    ``default_datasets``: dataset names per profile that ``run --all`` uses (a plain list applies to
    every profile).
    ``likelihood``: how the model gives a likelihood (None if it does not).
    ``accepts(dataset_spec)``: optional extra check, returning None or the reason it cannot run.
    """

    name: str
    family: str
    factory: Callable[[DatasetSpec, dict], Model]
    data_kinds: Sequence[DataKind]
    capabilities: Sequence[Capability] = (Capability.SAMPLE,)
    likelihood: Optional[LikelihoodKind] = None
    defaults: Mapping[str, dict] = field(default_factory=dict)
    default_datasets: Any = ()
    accepts: Optional[Callable[[DatasetSpec], Optional[str]]] = None
    description: str = ""
    version: str = "1"

    def __post_init__(self):
        self.data_kinds = frozenset(DataKind(k) for k in self.data_kinds)
        self.capabilities = frozenset(Capability(c) for c in self.capabilities)
        if self.likelihood is not None:
            self.likelihood = LikelihoodKind(self.likelihood)
            self.capabilities = self.capabilities | {Capability.LOG_LIKELIHOOD}

    def hparams(self, profile: str) -> dict:
        if profile in self.defaults:
            return dict(self.defaults[profile])
        return dict(self.defaults.get("quick", {}))

    def datasets_for(self, profile: str) -> list:
        d = self.default_datasets
        if isinstance(d, Mapping):
            d = d.get(profile, d.get("quick", ()))
        return list(d)

    def incompatibility(self, dataset: DatasetSpec) -> Optional[str]:
        """None if this model can run on the dataset, otherwise the reason it cannot."""
        if dataset.kind not in self.data_kinds:
            kinds = ", ".join(sorted(k.value for k in self.data_kinds))
            return f"{self.name} handles {kinds} data; {dataset.name} is {dataset.kind.value}"
        if self.accepts is not None:
            return self.accepts(dataset)
        return None


# --------------------------------------------------------------------------- metrics


@dataclass
class Measurement:
    """One number. ``estimator`` is exact, bound, estimate (likelihoods), measured (timings) or
    statistic (a sample statistic such as FID). ``n`` is the sample count behind it."""

    metric: str
    value: float
    unit: str
    estimator: str
    higher_is_better: bool
    stderr: Optional[float] = None
    n: Optional[int] = None
    details: dict = field(default_factory=dict)

    def __post_init__(self):
        if isinstance(self.estimator, Enum):
            self.estimator = self.estimator.value
        if self.estimator not in ESTIMATORS:
            raise ValueError(f"estimator must be one of {ESTIMATORS}, not {self.estimator!r}")
        self.value = float(self.value)
        if self.stderr is not None:
            self.stderr = float(self.stderr)

    @property
    def finite(self) -> bool:
        return math.isfinite(self.value) and (self.stderr is None or math.isfinite(self.stderr))


@dataclass
class MetricContext:
    """What a metric's compute step receives for one job."""

    model: Model
    model_spec: ModelSpec
    dataset: Dataset
    profile: "Any"  # harness.profiles.Profile
    device: torch.device
    seed: int
    fit: Optional[FitContext] = None
    cache_dir: Optional[Any] = None  # pathlib.Path for on-disk caches shared across runs
    data_root: Optional[Any] = None  # pathlib.Path: where user-supplied data and weights live
    feature_extractors: Mapping[str, Any] = field(default_factory=dict)  # name -> FeatureExtractorSpec
    run_cache: dict = field(default_factory=dict)  # shared across the jobs of one run

    def generator(self, offset: int = 0) -> torch.Generator:
        return torch.Generator(device="cpu").manual_seed(self.seed * 1_000_003 + offset)


@dataclass
class MetricSpec:
    """A registered metric.

    ``compute(ctx: MetricContext)`` returns a list of :class:`Measurement` (a metric may report
    several related numbers, e.g. ``nll`` and ``bpd``).
    ``requires``: capabilities the model must declare. ``data_kinds``: kinds it applies to (empty:
    all). ``applies(model_spec, dataset_spec)``: optional extra check returning None or a reason.
    """

    name: str
    unit: str
    higher_is_better: bool
    compute: Callable[[MetricContext], list]
    requires: Sequence[Capability] = ()
    data_kinds: Sequence[DataKind] = ()
    applies: Optional[Callable[[ModelSpec, DatasetSpec], Optional[str]]] = None
    description: str = ""
    version: str = "1"

    def __post_init__(self):
        self.requires = frozenset(Capability(c) for c in self.requires)
        self.data_kinds = frozenset(DataKind(k) for k in self.data_kinds)

    def incompatibility(self, model: ModelSpec, dataset: DatasetSpec) -> Optional[str]:
        missing = self.requires - model.capabilities
        if missing:
            return f"{model.name} lacks {', '.join(sorted(c.value for c in missing))}"
        if self.data_kinds and dataset.kind not in self.data_kinds:
            return f"{self.name} does not apply to {dataset.kind.value} data"
        if self.applies is not None:
            return self.applies(model, dataset)
        return None


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
