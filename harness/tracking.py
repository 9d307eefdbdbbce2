"""Experiment trackers in a command: choosing the registered trackers a user names, checking before
anything runs that they can work, and calling them from the coordinator (:class:`Tracking`).

The runner tells the session when the run starts and when each job is stored; the command tells it
when the report files are written. Each call goes to every tracker still working. A tracker that
raises is dropped with one warning that says what failed and why; the run goes on and every result is
in the store already, so no tracker can cost a result. Jobs that ``--resume`` finds finished are not
run again and so not logged again; skipped jobs (incompatible pairs) are counted, not logged.
"""

from __future__ import annotations

import importlib.util
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Optional

from harness.artifacts import DENSITY_FILE, META_FILE, SAMPLE_LABELS_FILE, SAMPLES_FILE
from harness.contracts import TrackedJob, TrackedRun, TrackedValue, UserError
from harness.jobs import JobStatus

NONE = "none"  # --tracker none: no tracker, whatever the config file says
JOB_FILES = (SAMPLES_FILE, SAMPLE_LABELS_FILE, DENSITY_FILE, META_FILE)  # what a job's artifact folder shows
_REASON_CHARS = 400


@dataclass
class TrackingSettings:
    """The trackers a user chose and their ``--tracker-arg`` values (``KEY`` for every chosen tracker
    that takes KEY, ``TRACKER.KEY`` for one), as written to a run's config.toml."""

    trackers: list = field(default_factory=list)
    args: dict = field(default_factory=dict)

    @property
    def chosen(self) -> list:
        return [] if NONE in self.trackers else list(dict.fromkeys(self.trackers))

    def as_config(self) -> dict:
        """The ``[tracking]`` table of config.toml ({} when no tracker is chosen)."""
        if not self.chosen:
            return {}
        return {"trackers": self.chosen, **({"args": dict(self.args)} if self.args else {})}


def parse_tracker_args(texts) -> dict:
    """``["KEY=VALUE", ...]`` -> ``{KEY: VALUE}``; a text without ``=`` or a key is a UserError."""
    out = {}
    for text in texts or []:
        key, eq, value = text.partition("=")
        if not eq or not key.strip():
            raise UserError(f"--tracker-arg {text!r}: expected KEY=VALUE or TRACKER.KEY=VALUE "
                            "(e.g. --tracker-arg experiment=toys)")
        out[key.strip()] = value
    return out


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent package missing, or a loaded module without a spec
        return False


def _route(host, chosen: list, args: Mapping) -> dict:
    """tracker name -> its settings, from ``KEY`` and ``TRACKER.KEY`` arguments."""
    per = {name: {} for name in chosen}
    for key, value in args.items():
        prefix, dot, option = key.partition(".")
        if dot and prefix in host.registry.trackers:
            if prefix not in per:
                raise UserError(f"--tracker-arg {key}: tracker {prefix!r} is not chosen (add --tracker {prefix})")
            targets = [prefix]
        else:
            targets, option = [n for n in chosen if key in host.tracker(n).options], key
        for name in targets:
            options = host.tracker(name).options
            if option not in options:
                raise UserError(f"--tracker-arg {key}: tracker {name!r} takes {_known(options)}")
            per[name][option] = str(value)
        if not targets:
            takes = "; ".join(f"{n}: {_known(host.tracker(n).options)}" for n in chosen) or "no tracker is chosen"
            raise UserError(f"--tracker-arg {key}: no chosen tracker takes {key!r} ({takes})")
    return per


def _known(options: Mapping) -> str:
    return ", ".join(sorted(options)) or "no arguments"


def open_trackers(host, settings: TrackingSettings, warn: Callable[[str], None], command: str) -> "Tracking":
    """The chosen trackers, opened: an unknown name, an argument no chosen tracker takes or a missing
    package is a UserError (exit 2, before anything runs); a tracker that fails to open is dropped with
    a warning."""
    chosen = settings.chosen
    if not chosen:
        return Tracking(warn=warn, command=command)
    for name in chosen:
        spec = host.tracker(name)
        missing = [m for m in spec.requires if not _importable(m)]
        if missing:
            hint = f": pip install '{spec.install}'" if spec.install else ""
            raise UserError(f"tracker {name!r} needs {', '.join(missing)}, which is not installed{hint}")
    per = _route(host, chosen, settings.args)
    tracking = Tracking(warn=warn, command=command)
    for name in chosen:
        try:
            tracking.add(name, host.tracker(name).open(per[name]))
        except UserError:
            raise
        except Exception as exc:  # a tracker must not stop the run
            tracking.failed(name, "opening it", exc)
    return tracking


class Tracking:
    """The trackers of one command and the calls to them (from the coordinator only)."""

    def __init__(self, warn: Optional[Callable[[str], None]] = None, command: str = "run"):
        self.warn = warn or (lambda text: None)
        self.command = command
        self.active: dict = {}  # name -> Tracker still working
        self.where: dict = {}  # name -> where its run can be seen
        self.errors: dict = {}  # name -> why it stopped
        self.run: Optional[TrackedRun] = None

    def add(self, name: str, tracker) -> None:
        self.active[name] = tracker

    def failed(self, name: str, doing: str, exc: BaseException) -> None:
        self.active.pop(name, None)
        reason = _one_line(f"{type(exc).__name__}: {exc}")
        self.errors[name] = f"{doing} failed ({reason})"
        out = f" and every result stays in {self.run.out}" if self.run is not None else ""
        self.warn(f"tracker {name} stopped: {doing} failed ({reason}); the run goes on without it{out}")

    def _call(self, name: str, doing: str, method: str, *args):
        tracker = self.active.get(name)
        if tracker is None:
            return None
        try:
            return getattr(tracker, method)(*args)
        except Exception as exc:  # a tracker never costs a result
            self.failed(name, doing, exc)
            return None

    # ------------------------------------------------------------------ the three moments
    def run_started(self, info, run_info: Mapping) -> None:
        """The runner's run started (``info``: :class:`harness.runner.RunInfo`; ``run_info``: what the store
        records about it). A command that runs several runners (one per profile) opens one parent run."""
        if self.run is not None or not self.active:
            return
        self.run = tracked_run(info, run_info, self.command)
        for name in list(self.active):
            self.where[name] = self._call(name, "opening its run", "start_run", self.run) or ""

    def job_finished(self, job, result) -> None:
        """A job's result is stored; trackers log the job unless it was skipped."""
        if not self.active or self.run is None or result.status == JobStatus.SKIPPED:
            return
        tracked = tracked_job(self.run, job, result)
        for name in list(self.active):
            self._call(name, f"logging {tracked.name}", "log_job", tracked)

    def run_finished(self, files: Mapping[str, Path], summary: Mapping, status: str) -> None:
        """The command wrote ``files`` (kind -> path: the reports, results.json, config.toml); trackers log
        those that exist and close the parent run."""
        if not self.active or self.run is None:
            return
        files = {kind: Path(path) for kind, path in files.items() if Path(path).is_file()}
        counts = {str(k): int(summary[k]) for k in (*JobStatus, "reused") if k in summary}
        for name in list(self.active):
            self._call(name, "closing its run", "finish_run", files, counts, status)

    def report(self) -> dict:
        """name -> ``{"where": ...}`` or ``{"error": ...}``, for the command's output."""
        out = {name: {"where": self.where.get(name, "")} for name in self.active}
        out.update({name: {"error": reason} for name, reason in self.errors.items()})
        return out


def _one_line(text: str) -> str:
    text = re.sub(r"\s+", " ", text).strip()
    return text if len(text) <= _REASON_CHARS else text[:_REASON_CHARS - 3] + "..."


# ---------------------------------------------------------------------------- what trackers receive

def tracked_run(info, run_info: Mapping, command: str) -> TrackedRun:
    out = Path(info.out)
    versions = dict(info.versions)
    machine = str((run_info.get("machine") or {}).get("id", ""))
    tags = {"harness.version": str(versions.get("harness", "")), "harness.run_id": info.run_id,
            "harness.command": command, "harness.profile": info.profile,
            "harness.seeds": ", ".join(map(str, info.seeds)), "harness.device": info.device,
            "harness.machine": machine, "harness.torch": str(versions.get("torch", "")),
            "harness.results": str(out.resolve())}
    return TrackedRun(run_id=info.run_id, name=out.resolve().name, command=command, profile=info.profile,
                      seeds=tuple(info.seeds), device=info.device, machine=machine, out=out, jobs=len(info.jobs),
                      tags=tags, versions=versions)


def tracked_job(run: TrackedRun, job, result) -> TrackedJob:
    values, problems = [], []
    for m in result.measurements:
        identity = m.id or m.metric
        if not m.finite:
            problems.append((identity, JobStatus.FAILED, "non-finite value"))
            continue
        values.append(TrackedValue(identity=identity, metric=m.metric, value=m.value, stderr=m.stderr,
                                   unit=m.unit or "", estimator=m.estimator or "",
                                   n=None if m.n is None else int(m.n), higher_is_better=bool(m.higher_is_better)))
    problems += [(name, JobStatus.FAILED, reason) for name, reason in result.metric_failures]
    problems += [(name, JobStatus.SKIPPED, reason) for name, reason in result.metric_skips]
    files = {}
    saved = (result.details.get("artifact") or {}).get("path")
    if saved:
        folder = Path(run.out) / saved
        files = {name: folder / name for name in JOB_FILES if (folder / name).is_file()}
    tags = {**run.tags, "harness.model": job.model, "harness.family": job.family, "harness.dataset": job.dataset,
            "harness.seed": str(job.seed), "harness.job_key": job.key, "harness.status": result.status,
            "harness.source": str(result.details.get("source") or job.origin)}
    if result.reason:
        tags["harness.reason"] = _one_line(result.reason)
    return TrackedJob(name=job.label, key=job.key, model=job.model, family=job.family, dataset=job.dataset,
                      seed=job.seed, status=result.status, reason=result.reason, seconds=float(result.seconds),
                      params=dict(job.hparams), values=tuple(values), problems=tuple(problems), files=files,
                      tags=tags)
