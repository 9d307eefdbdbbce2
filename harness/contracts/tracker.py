"""The tracker contract: a registered :class:`TrackerSpec` opens a :class:`Tracker`, which the
coordinator tells when a run starts, when each job that ran has been stored and when the run ends, so
the numbers also land in an experiment tracker (MLflow, Weights & Biases, ...).

What a tracker receives is plain data made by the core: :class:`TrackedRun`, :class:`TrackedJob` (with
its :class:`TrackedValue` measurements) and the paths of the run's report files. A tracker is called
from the coordinator process only, one call at a time; an exception it raises costs it the rest of
the run (the core prints one warning with the reason) and never a result.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Optional, Sequence

from harness.contracts.kinds import LikelihoodKind

# The likelihood kinds: a value of one name and another kind is another quantity (an exact NLL and a
# bound on it must never share a chart), so the kind is part of the value's key.
_KINDS_IN_KEY = frozenset(k.value for k in LikelihoodKind)


def value_key(identity: str, estimator: Optional[str]) -> str:
    """The tracker key of a measurement: its identity (``fid@2000``, ``fid@2000[steps=10]``), followed
    by ``.exact``, ``.bound`` or ``.estimate`` for a likelihood (``nll.bound``). Other marks
    (``statistic``, ``measured``) are fixed by the metric's declaration and stay out of the key."""
    return f"{identity}.{estimator}" if estimator in _KINDS_IN_KEY else identity


@dataclass(frozen=True)
class TrackedValue:
    """One measurement of a job, as trackers log it."""

    identity: str  # nll, fid@2000, fid@2000[steps=10]
    metric: str  # the measurement's name (fid)
    value: float
    stderr: Optional[float]
    unit: str
    estimator: str  # exact, bound, estimate, measured, statistic
    n: Optional[int]
    higher_is_better: bool

    @property
    def key(self) -> str:
        """See :func:`value_key`."""
        return value_key(self.identity, self.estimator)

    @property
    def stderr_key(self) -> str:
        """The key of the standard error, logged beside the value where there is one: ``<key>.stderr``."""
        return f"{self.key}.stderr"

    def as_dict(self) -> dict:
        return {"key": self.key, "identity": self.identity, "metric": self.metric, "value": self.value,
                "stderr": self.stderr, "unit": self.unit, "estimator": self.estimator, "n": self.n,
                "higher_is_better": self.higher_is_better}


@dataclass(frozen=True)
class TrackedRun:
    """A harness run (one command: `run`, `evaluate`, `evaluate-samples`) as a tracker's parent run.

    ``tags``: ``harness.*`` strings (version, run id, command, profile, machine id, device, results
    directory) for the tracker's tags. ``versions``: harness, torch, python and every plugin's."""

    run_id: str
    name: str  # the results directory's name
    command: str
    profile: str
    seeds: tuple
    device: str
    machine: str  # the machine id (harness.machine.machine_id)
    out: Path
    jobs: int  # jobs planned
    tags: Mapping[str, str] = field(default_factory=dict)
    versions: Mapping = field(default_factory=dict)


@dataclass(frozen=True)
class TrackedJob:
    """A job that ran (ok or failed) and is stored, as a tracker's child run.

    ``name``: ``<model>/<dataset>/seed<N>``. ``params``: the resolved hyperparameters. ``values``: the
    finite measurements. ``problems``: ``(metric, status, reason)`` of every metric that failed or was
    skipped. ``files``: file name -> path of what the job saved beside its model (the sample batch,
    its labels, the log-density grid, the artifact's meta.json); the fitted weights are not among
    them. ``tags``: ``harness.*`` strings (those of the run plus model, dataset, seed, job key,
    source, status)."""

    name: str
    key: str
    model: str
    family: str
    dataset: str
    seed: int
    status: str
    reason: str
    seconds: float
    params: Mapping = field(default_factory=dict)
    values: Sequence[TrackedValue] = ()
    problems: Sequence[tuple] = ()
    files: Mapping[str, Path] = field(default_factory=dict)
    tags: Mapping[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def record(self) -> dict:
        """Everything about the job as JSON-ready data (trackers log it as ``measurements.json``): the
        keys and values, with units, marks, standard errors and sample counts, and the problems."""
        return {"name": self.name, "key": self.key, "model": self.model, "family": self.family,
                "dataset": self.dataset, "seed": self.seed, "status": self.status, "reason": self.reason,
                "seconds": self.seconds, "hparams": dict(self.params), "tags": dict(self.tags),
                "measurements": [v.as_dict() for v in self.values],
                "problems": [{"metric": m, "status": s, "reason": r} for m, s, r in self.problems]}


class Tracker:
    """An open tracker. Every method may raise: the core then warns once and stops calling it."""

    def start_run(self, run: TrackedRun) -> str:
        """Open the parent run; return where it can be seen (a URL, a folder), or ``""``."""
        return ""

    def log_job(self, job: TrackedJob) -> None:
        """Log one job as a child run of the parent (params, metrics, tags, files)."""

    def finish_run(self, files: Mapping[str, Path], summary: Mapping, status: str) -> None:
        """Close the parent run. ``files``: the report files that exist (``html``, ``markdown``, ``csv``,
        ``json``, ``config``: report.html ... config.toml). ``summary``: job counts (ok, failed, skipped,
        reused; none when the run was interrupted). ``status``: ``finished``, ``failed`` (some job failed)
        or ``interrupted``."""


@dataclass(frozen=True)
class TrackerSpec:
    """A registered tracker.

    ``open(settings)`` builds a :class:`Tracker` from the user's ``--tracker-arg`` values for it
    (``{key: string}``, keys among ``options``); it should not yet connect anywhere. A
    :class:`harness.UserError` it raises (a bad value) stops the command with exit code 2; any other
    exception costs the tracker the run, with a warning.
    ``options``: the ``--tracker-arg`` keys it accepts, each with a one-line doc.
    ``requires``: modules that must be importable for it to work (checked before anything runs);
    ``install``: what to install when one is missing (``harness[mlflow]``).
    """

    name: str
    open: Callable[[Mapping[str, str]], Tracker]
    options: Mapping[str, str] = field(default_factory=dict)
    requires: Sequence[str] = ()
    install: str = ""
    description: str = ""
