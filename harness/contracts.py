"""The contracts of docs/architecture.md as Python types: dataset, model, metric, measurement.

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

    Models call :meth:`set_total_steps` once they know how many steps their training will take
    (pre-training included), then :meth:`step` once per optimisation step with the number of examples
    it used; these drive the progress bar and the training-throughput figures. :meth:`should_stop` is
    True once the job's time budget is spent; a model should then stop training early.
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

    def set_total_steps(self, total: Optional[int]) -> None:
        """How many :meth:`step` calls the model's training will make (None: unknown)."""
        self.total_steps = None if total is None else int(total)

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
    - ``export_state()`` / ``restore_state(state)``: the fitted model as named tensors, so it outlives
      its job (saved in a format that loads without executing code). The default covers every
      ``torch.nn.Module`` and tensor attribute; a model with other fitted state (numbers, lists,
      objects holding tensors) overrides both, e.g. storing a scalar as a 0-d tensor.
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

    def export_state(self) -> dict:
        """Everything a fitted model needs to sample and score again, as ``{name: tensor}`` (CPU).

        Default: the ``state_dict`` of every module attribute (keys ``attr.param``) and every tensor
        attribute (key ``attr``)."""
        state = {}
        for name, value in sorted(vars(self).items()):
            if isinstance(value, torch.nn.Module):
                state.update({f"{name}.{k}": v.detach().cpu() for k, v in value.state_dict().items()})
            elif isinstance(value, torch.Tensor):
                state[name] = value.detach().cpu()
        return state

    def restore_state(self, state: Mapping[str, torch.Tensor]) -> None:
        """Load what :meth:`export_state` gave into a model built by the factory with the same dataset
        and hyperparameters; a missing or unexpected key, or a shape other than the module's (or than the
        tensor attribute's, where the fresh model already has one), is an error."""
        used = set()
        for name, value in sorted(vars(self).items()):
            if isinstance(value, torch.nn.Module):
                prefix = f"{name}."
                sub = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
                value.load_state_dict(sub, strict=True)
                used |= {prefix + k for k in sub}
        for key, tensor in state.items():
            if key in used:
                continue
            if "." in key or not hasattr(self, key):
                raise KeyError(f"{type(self).__name__} has no state {key!r}")
            current = getattr(self, key)
            if isinstance(current, torch.Tensor) and current.shape != tensor.shape:
                raise ValueError(f"{type(self).__name__} state {key!r} must have shape {tuple(current.shape)}, not "
                                 f"{tuple(tensor.shape)}")
            setattr(self, key, tensor.to(self.device))
        self.to(self.device)


@dataclass
class ModelSpec:
    """A registered model factory and its declarations.

    ``factory(dataset_spec, hparams)`` builds an unfitted :class:`Model`; ``hparams`` holds every
    declared hyperparameter, resolved for the job (see :mod:`harness.hparams`).
    ``hyperparameters``: the :class:`harness.hparams.Hyperparameters` declaration (names, base values,
    per-profile and per-dataset rules).
    ``default_datasets``: dataset names per profile that ``run --all`` uses (a plain list applies to
    every profile).
    ``likelihood``: how the model gives a likelihood (None if it does not).
    ``accepts(dataset_spec)``: optional extra check, returning None or the reason it cannot run.
    ``resources``: what one job of this model asks of a cluster executor (``run --executor ray``):
    ``{"cpus": n, "gpus": x}``, each value a number (GPUs may be fractional) or a ``{profile: number}``
    mapping; unset keys take the executor's defaults (see :mod:`harness.executors.resources`).
    """

    name: str
    family: str
    factory: Callable[[DatasetSpec, dict], Model]
    data_kinds: Sequence[DataKind]
    capabilities: Sequence[Capability] = (Capability.SAMPLE,)
    likelihood: Optional[LikelihoodKind] = None
    hyperparameters: Any = None  # harness.hparams.Hyperparameters
    default_datasets: Any = ()
    accepts: Optional[Callable[[DatasetSpec], Optional[str]]] = None
    description: str = ""
    version: str = "1"
    resources: Any = None

    def __post_init__(self):
        from harness.hparams import Hyperparameters

        self.data_kinds = frozenset(DataKind(k) for k in self.data_kinds)
        self.capabilities = frozenset(Capability(c) for c in self.capabilities)
        if self.likelihood is not None:
            self.likelihood = LikelihoodKind(self.likelihood)
            self.capabilities = self.capabilities | {Capability.LOG_LIKELIHOOD}
        if self.hyperparameters is None:
            self.hyperparameters = Hyperparameters()
        elif isinstance(self.hyperparameters, Mapping):
            self.hyperparameters = Hyperparameters(defaults=self.hyperparameters)
        if not isinstance(self.hyperparameters, Hyperparameters):
            raise TypeError(f"model {self.name!r}: hyperparameters must be a harness.Hyperparameters, not "
                            f"{type(self.hyperparameters).__name__}")

    def resources_for(self, profile: str) -> dict:
        """The declared ``resources`` for one profile: ``{"cpus": n, "gpus": x}``, only the keys declared."""
        out = {}
        for key, value in (self.resources or {}).items():
            if key not in ("cpus", "gpus"):
                raise ValueError(f"model {self.name!r}: unknown resource {key!r} (cpus, gpus)")
            if isinstance(value, Mapping):
                if profile not in value:
                    continue
                value = value[profile]
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ValueError(f"model {self.name!r}: resource {key!r} must be a number >= 0, not {value!r}")
            out[key] = value
        return out

    def resolve_hparams(self, profile: str, dataset: Optional[DatasetSpec] = None, overrides=()) -> dict:
        """Concrete hyperparameters for one job (``overrides``: (key, value, source) from the user)."""
        return self.hyperparameters.resolve(profile, dataset, overrides)

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


QUALITY, SPEED = "quality", "speed"


@dataclass(frozen=True)
class Tolerance:
    """How far a measurement may move the wrong way before the regression gate calls it worse.

    Difference form: ``|current - baseline| > max(absolute, relative * |baseline|)``.
    Ratio form (``ratio=True``, for speed): the worse-way ratio exceeds ``1 / (1 - relative)``
    (``relative=0.5``: half the throughput, or twice the time).
    """

    relative: float = 0.0
    absolute: float = 0.0
    ratio: bool = False

    def floor(self, baseline: float) -> float:
        """The allowed absolute change for a difference tolerance."""
        return max(self.absolute, self.relative * abs(baseline))

    @property
    def factor(self) -> float:
        """The allowed worse-way ratio for a ratio tolerance (2.0 for relative 0.5)."""
        return 1.0 / (1.0 - self.relative) if self.relative < 1 else math.inf

    def describe(self) -> str:
        if self.ratio:
            return f"x{self.factor:g}"
        parts = []
        if self.relative:
            parts.append(f"{100 * self.relative:g}%")
        if self.absolute:
            parts.append(f"{self.absolute:g}")
        return " or ".join(parts) if parts else "0"

    def as_dict(self) -> dict:
        return {"relative": self.relative, "absolute": self.absolute, "ratio": self.ratio}


# A speed figure from a shared machine is noisy: only half the throughput (twice the time) counts.
SPEED_TOLERANCE = Tolerance(relative=0.5, ratio=True)


@dataclass(frozen=True)
class Output:
    """The declaration of one measurement a metric emits.

    ``name``: what the measurement is called (``nll``, ``bpd``, ``sample_latency_p50``).
    ``unit``, ``higher_is_better``: what the number is and which way is better.
    ``kind``: ``quality`` (likelihoods, sample statistics) or ``speed`` (timings, memory, FLOPs).
    ``estimator``: the mark when the metric always emits one (``statistic``, ``measured``); a
    likelihood leaves it None and each measurement says exact, bound or estimate.
    ``tolerance``: the regression gate's floor (:class:`Tolerance`); speed outputs default to a ratio.
    ``order``: where its column goes in tables (smaller first).
    ``sample_count_in_id``: the sample count is part of what the number means, so the measurement's
    identity is ``name@n`` (``fid@2000``); FID at 2k is not FID at 10k.
    ``integer``: printed without decimals (counts). ``headline``: shown in the terminal summary.
    """

    name: str
    unit: str = ""
    higher_is_better: bool = False
    kind: str = QUALITY
    estimator: Optional[str] = None
    tolerance: Optional[Tolerance] = None
    order: int = 100
    sample_count_in_id: bool = False
    integer: bool = False
    headline: bool = False
    description: str = ""

    def __post_init__(self):
        if self.kind not in (QUALITY, SPEED):
            raise ValueError(f"output {self.name!r}: kind must be {QUALITY!r} or {SPEED!r}, not {self.kind!r}")
        if self.estimator is not None and self.estimator not in ESTIMATORS:
            raise ValueError(f"output {self.name!r}: estimator must be one of {ESTIMATORS}")
        if self.tolerance is None:
            object.__setattr__(self, "tolerance", SPEED_TOLERANCE if self.kind == SPEED else Tolerance(relative=0.05))

    def identity(self, n: Optional[int]) -> str:
        return f"{self.name}@{n}" if self.sample_count_in_id and n is not None else self.name

    def as_dict(self) -> dict:
        return {"name": self.name, "unit": self.unit, "higher_is_better": self.higher_is_better, "kind": self.kind,
                "estimator": self.estimator, "tolerance": self.tolerance.as_dict(), "order": self.order,
                "sample_count_in_id": self.sample_count_in_id, "integer": self.integer,
                "headline": self.headline, "description": self.description}

    @classmethod
    def from_dict(cls, d: Mapping) -> "Output":
        d = dict(d)
        d["tolerance"] = Tolerance(**d.get("tolerance") or {})
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


@dataclass
class Measurement:
    """One number. ``estimator`` is exact, bound, estimate (likelihoods), measured (timings) or
    statistic (a sample statistic such as FID). ``n`` is the sample count behind it.

    ``unit``, ``higher_is_better`` and ``estimator`` may be left out where the metric's
    :class:`Output` declaration gives them; the runner fills them in, and sets ``id`` (``fid@2000``
    where the sample count is part of the identity, else the name)."""

    metric: str
    value: float
    unit: Optional[str] = None
    estimator: Optional[str] = None
    higher_is_better: Optional[bool] = None
    stderr: Optional[float] = None
    n: Optional[int] = None
    details: dict = field(default_factory=dict)
    id: Optional[str] = None

    def __post_init__(self):
        if isinstance(self.estimator, Enum):
            self.estimator = self.estimator.value
        if self.estimator is not None and self.estimator not in ESTIMATORS:
            raise ValueError(f"estimator must be one of {ESTIMATORS}, not {self.estimator!r}")
        self.value = float(self.value)
        if self.stderr is not None:
            self.stderr = float(self.stderr)

    @property
    def finite(self) -> bool:
        return math.isfinite(self.value) and (self.stderr is None or math.isfinite(self.stderr))


class UndeclaredMeasurement(ValueError):
    """A metric emitted a measurement its spec does not declare, or one that contradicts it."""


# The fixed permutation behind every evaluation subset: independent of the job's seed, so every model
# in a table is measured on the same test examples.
EVALUATION_SUBSET_SEED = 0


def evaluation_indices(size: int, n: Optional[int]) -> torch.Tensor:
    """Indices of the evaluation subset of a split of ``size`` examples: all of them when ``n`` is None,
    0 or not smaller, else the first ``n`` of a fixed permutation, sorted. A smaller subset is always
    contained in a larger one."""
    if not n or n >= size:
        return torch.arange(size)
    perm = torch.randperm(size, generator=torch.Generator().manual_seed(EVALUATION_SUBSET_SEED))
    return perm[:n].sort().values


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
    run_cache: dict = field(default_factory=dict)  # shared across the jobs of one run

    def generator(self, offset: int = 0) -> torch.Generator:
        return torch.Generator(device="cpu").manual_seed(self.seed * 1_000_003 + offset)

    def evaluation_split(self, n: Optional[int] = None, split: str = "test") -> Split:
        """The examples a metric evaluates on: ``split`` (test by default) limited to ``n`` examples
        (default: the profile's ``eval_examples``; 0 means all) by :func:`evaluation_indices`. Every
        metric takes its data from here, so the numbers of one table come from the same examples."""
        data = getattr(self.dataset, split)
        limit = self.profile.eval_examples if n is None else n
        idx = evaluation_indices(len(data), limit)
        if len(idx) == len(data):
            return data
        return Split(data.x[idx], None if data.y is None else data.y[idx])


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

    def __post_init__(self):
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
        m.unit, m.higher_is_better = out.unit, out.higher_is_better
        m.estimator = m.estimator or out.estimator
        m.id = out.identity(m.n)
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
