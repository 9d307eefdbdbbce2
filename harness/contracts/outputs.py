"""What a metric declares about each measurement it emits (:class:`Output`, its regression
:class:`Tolerance`) and the measurement itself."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import Enum
from typing import Mapping, Optional

import numpy as np

from harness.contracts.kinds import ESTIMATORS, Highlight, Judge, Role, Scaling

QUALITY, SPEED = "quality", "speed"

# The details key of a measurement whose output is judged ``Judge.BEYOND_REFERENCE``: the value the
# held-out test examples themselves score on the same statistic (what a model that draws new data gets).
REFERENCE_LEVEL = "test_reference"


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
    ``role`` (:class:`harness.contracts.kinds.Role`): what the number is for the core: a likelihood (a
    negative log-likelihood per example in nats), a sample-quality statistic, a speed figure, or other.
    Default: ``speed`` for a speed output, ``sample_quality`` for a quality output whose estimator is
    ``statistic``, else ``other``.
    ``scaling`` (:class:`harness.contracts.kinds.Scaling`): how a speed figure scales with the machine's
    speed: ``rate`` (per second), ``duration`` (a time) or ``none`` (bytes, FLOP counts, fractions).
    Quality outputs are ``none``; a speed output that leaves it undeclared (None) is never normalised
    across machines, so the regression gate compares it only with figures of the same machine.
    ``highlight`` (:class:`harness.contracts.kinds.Highlight`): which cell of its column the report's
    tables mark, the best or the worst by the direction. Default: ``worst`` for role ``memorisation``
    (the model that copies most), else ``best``.
    ``judge`` (:class:`harness.contracts.kinds.Judge`): how the regression gate and ``report A B`` judge
    its rows: by the direction (default), or ``beyond-reference``: one-sided about the reference level
    each measurement carries in ``details[REFERENCE_LEVEL]`` (what held-out data scores).
    ``protocol``: the names of the settings that change what the number means (the evaluation split and
    subset, importance samples, a feature extractor's fingerprint, a batch size ...), which the metric
    records in every measurement's ``protocol``; the runner refuses a measurement that lacks one. The
    runner adds ``device`` and ``torch_threads`` to every speed measurement itself. Two numbers whose
    protocols differ are never compared (docs/evidence.md).
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
    role: Optional[Role] = None
    scaling: Optional[Scaling] = None
    highlight: Optional[Highlight] = None
    judge: Judge = Judge.DIRECTION
    protocol: tuple = ()

    def __post_init__(self):
        if isinstance(self.protocol, str) or not all(isinstance(k, str) and k for k in self.protocol):
            raise ValueError(f"output {self.name!r}: protocol must be a sequence of setting names, not "
                             f"{self.protocol!r}")
        object.__setattr__(self, "protocol", tuple(self.protocol))
        if self.kind not in (QUALITY, SPEED):
            raise ValueError(f"output {self.name!r}: kind must be {QUALITY!r} or {SPEED!r}, not {self.kind!r}")
        if self.estimator is not None and self.estimator not in ESTIMATORS:
            raise ValueError(f"output {self.name!r}: estimator must be one of {ESTIMATORS}")
        if self.tolerance is None:
            object.__setattr__(self, "tolerance", SPEED_TOLERANCE if self.kind == SPEED else Tolerance(relative=0.05))
        role = self.role
        if role is None:
            role = (Role.SPEED if self.kind == SPEED else Role.SAMPLE_QUALITY if self.estimator == "statistic"
                    else Role.OTHER)
        object.__setattr__(self, "role", Role(role))
        if (self.role is Role.SPEED) != (self.kind == SPEED):
            raise ValueError(f"output {self.name!r}: role {self.role.value!r} does not fit kind {self.kind!r} "
                             "(role speed goes with kind speed)")
        scaling = self.scaling
        if scaling is None and self.kind != SPEED:
            scaling = Scaling.NONE
        object.__setattr__(self, "scaling", None if scaling is None else Scaling(scaling))
        highlight = self.highlight
        if highlight is None:
            highlight = Highlight.WORST if self.role is Role.MEMORISATION else Highlight.BEST
        object.__setattr__(self, "highlight", Highlight(highlight))
        object.__setattr__(self, "judge", Judge(self.judge))
        if self.judge is Judge.BEYOND_REFERENCE and self.kind == SPEED:
            raise ValueError(f"output {self.name!r}: judge {self.judge.value!r} is for quality outputs, not speed")

    def identity(self, n: Optional[int]) -> str:
        return f"{self.name}@{n}" if self.sample_count_in_id and n is not None else self.name

    def as_dict(self) -> dict:
        return {"name": self.name, "unit": self.unit, "higher_is_better": self.higher_is_better, "kind": self.kind,
                "estimator": self.estimator, "tolerance": self.tolerance.as_dict(), "order": self.order,
                "sample_count_in_id": self.sample_count_in_id, "integer": self.integer,
                "headline": self.headline, "description": self.description, "role": self.role.value,
                "scaling": None if self.scaling is None else self.scaling.value,
                "highlight": self.highlight.value, "judge": self.judge.value, "protocol": list(self.protocol)}

    @classmethod
    def from_dict(cls, d: Mapping, known: Optional["Output"] = None) -> "Output":
        """The declaration :meth:`as_dict` wrote. One written before outputs declared ``role``,
        ``scaling``, ``highlight`` and ``judge`` takes them from ``known`` (the installed metric's declaration
        of the same output) when that is of the same kind; otherwise they stay undeclared (the defaults; no
        scaling for a speed output, so its figures are compared only with the same machine's)."""
        d = dict(d)
        d["tolerance"] = Tolerance(**d.get("tolerance") or {})
        if known is not None and known.kind == d.get("kind", QUALITY):
            for key in ("role", "scaling", "highlight", "judge"):
                d.setdefault(key, getattr(known, key))
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


@dataclass(frozen=True, eq=False)
class ExampleValues:
    """A measurement's value for each example it averages over: ``values`` (float64, shape (N,); kept on
    disk as float32), whose mean is the measurement's value, and ``indices`` (int64, shape (N,)), which
    example of the split each value belongs to (:meth:`harness.contracts.MetricContext.evaluation_indices`).
    Two models' values pair example by example where their indices agree (:mod:`harness.evidence`)."""

    values: np.ndarray
    indices: np.ndarray

    def __post_init__(self):
        values = np.asarray(_numpy(self.values), dtype=np.float64).reshape(-1)
        indices = np.asarray(_numpy(self.indices)).reshape(-1)
        if values.shape != indices.shape:
            raise ValueError(f"{values.size} per-example values but {indices.size} example indices")
        if indices.size and not np.issubdtype(indices.dtype, np.integer):
            raise ValueError(f"example indices must be integers, not {indices.dtype}")
        object.__setattr__(self, "values", values)
        object.__setattr__(self, "indices", indices.astype(np.int64))

    @property
    def mean(self) -> float:
        return float(self.values.mean()) if self.values.size else math.nan


def _numpy(x):
    """A tensor as a NumPy array (on the CPU, detached); anything else as it is."""
    return x.detach().cpu().numpy() if hasattr(x, "detach") else x


PROTOCOL_TYPES = (str, int, float, bool, type(None))


def checked_protocol(protocol: Mapping, what: str) -> dict:
    """``protocol`` as a plain dict whose keys are names and whose values are JSON scalars or lists of
    them (so it is stored and compared as written); ValueError naming ``what`` otherwise."""
    if not isinstance(protocol, Mapping):
        raise ValueError(f"{what}: protocol must be a mapping of setting name -> value, not {type(protocol).__name__}")
    out = {}
    for key, value in protocol.items():
        if not isinstance(key, str) or not key:
            raise ValueError(f"{what}: protocol setting names must be non-empty strings, not {key!r}")
        plain = (lambda v: v.item() if isinstance(v, np.generic) else v)  # noqa: E731 (NumPy scalars as Python's)
        value = [plain(v) for v in value] if isinstance(value, (list, tuple)) else plain(value)
        scalars = value if isinstance(value, list) else [value]
        if not all(isinstance(v, PROTOCOL_TYPES) for v in scalars):
            raise ValueError(f"{what}: protocol setting {key!r} must be a string, number, boolean, None or a list "
                             f"of them, not {value!r}")
        out[key] = value
    return out


@dataclass
class Measurement:
    """One number. ``estimator`` is exact, bound, estimate (likelihoods), measured (timings) or
    statistic (a sample statistic such as FID). ``n`` is the sample count behind it.

    ``unit``, ``higher_is_better`` and ``estimator`` may be left out where the metric's
    :class:`Output` declaration gives them; the runner fills them in, and sets ``id`` (``fid@2000``
    where the sample count is part of the identity, else the name). ``variant`` is the label of the
    sampling variant it measures (:meth:`Model.sampling_variants`), set by the runner; the identity
    then ends in ``[variant]``.

    ``protocol``: the settings that change what the number means, name -> a JSON scalar (or a list of
    them): at least the names its :class:`Output` declares. ``per_example``: the value of each example
    the number averages over (:class:`ExampleValues`), for a measurement that is a mean over test
    examples; the runner keeps them beside the results (:mod:`harness.per_example`), not in the store."""

    metric: str
    value: float
    unit: Optional[str] = None
    estimator: Optional[str] = None
    higher_is_better: Optional[bool] = None
    stderr: Optional[float] = None
    n: Optional[int] = None
    details: dict = field(default_factory=dict)
    id: Optional[str] = None
    variant: Optional[str] = None
    protocol: dict = field(default_factory=dict)
    per_example: Optional[ExampleValues] = None

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
