"""The runner: plans jobs (model x dataset x seed under a profile), hands them to an executor and
streams each result into the store as it ends.

A job that raises, produces NaN/inf or passes its time limit is recorded as failed with its reason
(see :mod:`harness.worker`) and the run goes on. Incompatible pairs are recorded as skipped with their
reason. The runner is the coordinator: it alone writes the store and calls the observer hooks and the
user's trackers (:mod:`harness.tracking`). The
models themselves are saved by whoever ran the job, as files under ``DIR/artifacts``
(:mod:`harness.artifacts`); with ``resume`` a job still to do whose model was saved by a recorded job
(same model key: everything but the metrics) restores it instead of training again.
"""

from __future__ import annotations

import math
import platform
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import torch

import harness
from harness import artifacts, per_example
from harness.applicable_metrics import metrics_for
from harness.contracts import Tagged, UserError
from harness.data import resolve_data_root
from harness.hparams import OverrideSet
from harness.jobs import Job, JobResult, JobStatus, Origin, SkipKind, job_key, model_key
from harness.machine import Calibration, fingerprint, machine_info
from harness.profiles import Profile
from harness.speed_sharing import share_speed
from harness.store import Store
from harness.tracking import Tracking
from harness.worker import JobRunner

# Seconds between two calibration rounds while jobs run in this process (harness.machine.Calibration).
CALIBRATION_INTERVAL_S = 30.0

__all__ = ["Runner", "RunInfo", "Job", "JobResult", "JobStatus", "select_pairs", "environment_info"]


@dataclass
class RunInfo:
    run_id: str
    profile: str
    seeds: list
    device: str
    out: Path
    versions: dict
    jobs: list


def environment_info(device: torch.device, plugins: dict) -> dict:
    info = {
        "harness": harness.__version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "processor": fingerprint(device)["processor"],  # the model name, e.g. "AMD EPYC 7B13"
        "threads": torch.get_num_threads(),
        "device": str(device),
        "plugins": {name: p.version for name, p in plugins.items()},
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def plugin_owners(registry) -> dict:
    """Which plugin registered each model, dataset and measurement (by output name): the regression gate
    tells rows of a plugin that is not installed from rows that went missing."""
    owners = {"models": {}, "datasets": {}, "outputs": {}}
    for (kind, name), plugin in registry.owners.items():
        if kind in ("models", "datasets"):
            owners[kind][name] = plugin
    for output, (metric, _) in registry.output_declarations().items():
        owners["outputs"][output] = registry.owners.get(("metrics", metric), "")
    return {kind: dict(sorted(names.items())) for kind, names in owners.items()}


def running_line(jobs: list) -> str:
    """The progress bar's note: the jobs running now."""
    return ("running: " + ", ".join(job.label for job in jobs)) if jobs else ""


# ---------------------------------------------------------------------------- planning

def select_pairs(host, models: Optional[list], datasets: Optional[list], run_all: bool, profile: str):
    """(model spec, dataset spec, skip reason or None) for every pair the selection names. Without
    ``datasets`` each model takes its default datasets for the profile, tag selections resolved
    against the installed datasets (``ModelSpec.datasets_for``)."""
    reg = host.registry
    if run_all:
        model_specs = [reg.models[name] for name in sorted(reg.models)]
    else:
        model_specs = [host.model(name) for name in models or []]
    dataset_specs = [host.dataset(name) for name in datasets] if datasets else None
    pairs = []
    for m in model_specs:
        if dataset_specs is None:
            try:
                names = m.datasets_for(profile, reg.datasets)
            except UserError as exc:  # a per-profile declaration without this profile
                pairs.append((m, None, str(exc)))
                continue
            unmatched = [entry.tag for entry in m.default_entries(profile)
                         if isinstance(entry, Tagged) and not entry.select(reg.datasets)]
            for tag in unmatched:
                pairs.append((m, None, f"no installed dataset is tagged {tag!r} (a default selection of {m.name})"))
            if not names:
                if not unmatched:
                    pairs.append((m, None, f"{m.name} declares no default datasets for profile {profile}"))
                continue
            chosen = []
            for name in names:
                if name not in reg.datasets:
                    pairs.append((m, None, f"default dataset {name!r} of {m.name} is not installed"))
                    continue
                chosen.append(reg.datasets[name])
        else:
            chosen = dataset_specs
        for d in chosen:
            pairs.append((m, d, m.incompatibility(d)))
    return pairs


class Runner:
    """Plans and runs jobs. ``overrides``: the user's hyperparameter overrides
    (:class:`harness.hparams.Override`), checked against the registered models and applied in ``plan``.
    ``executor``: where the jobs run (an executor object, :mod:`harness.executors.spec`; default: one
    after another in this process)."""

    def __init__(self, host, profile: Profile, out: Path, seeds: list, device: str = "cpu",
                 data_root: Optional[Path] = None, cache_dir: Optional[Path] = None, resume: bool = False,
                 metrics: Optional[list] = None, job_timeout: Optional[float] = None,
                 progress: Optional[Callable] = None, executor=None, overrides: Optional[list] = None,
                 save_artifacts: bool = True, tracking: Optional[Tracking] = None, speed_per_seed: bool = False):
        self.host = host
        self.profile = profile
        self.out = Path(out)
        self.seeds = list(seeds)
        self.device = torch.device(device)
        self.data_root = resolve_data_root(data_root)
        self.cache_dir = Path(cache_dir) if cache_dir else self.out / "cache"
        self.resume = resume
        self.metric_names = metrics
        self.overrides = OverrideSet(overrides or [], host.registry.models)
        self.progress = progress  # factory: progress(total, desc) -> tqdm-like or None
        if executor is None:
            from harness.executors import InProcess

            executor = InProcess()
        self.executor = executor
        self.save_artifacts = save_artifacts
        self.speed_per_seed = speed_per_seed  # else each (model, dataset)'s speed is measured by one seed's job
        self.tracking = tracking if tracking is not None else Tracking()  # the user's trackers (harness.tracking)
        self.job_runner = JobRunner(host, profile, self.device, self.data_root, self.cache_dir, metrics,
                                    job_timeout, progress,
                                    artifacts_dir=artifacts.artifacts_dir(self.out) if save_artifacts else None)
        self.job_timeout = self.job_runner.job_timeout

    @property
    def device_description(self) -> str:
        """The run's device for people: ``cpu``, or ``cuda (NVIDIA H100 80GB HBM3)``."""
        if self.device.type == "cuda":
            return f"{self.device} ({torch.cuda.get_device_name(self.device)})"
        return str(self.device)

    # ------------------------------------------------------------------ plan
    def plan(self, models, datasets, run_all: bool) -> list:
        jobs = []
        for mspec, dspec, reason in select_pairs(self.host, models, datasets, run_all, self.profile.name):
            dname = dspec.name if dspec else "-"
            hparams = (mspec.resolve_hparams(self.profile.name, dspec, self.overrides.for_job(mspec, dname))
                       if dspec is not None else {})
            provenance, metrics = "", ()
            kind = SkipKind.INCOMPATIBLE if reason is not None and dspec is not None else SkipKind.OTHER
            if reason is None:
                try:
                    provenance = self.job_runner.datasets.get(dspec).provenance
                except UserError as exc:
                    reason, kind = str(exc), SkipKind.DATA
            if reason is None:
                chosen, _ = metrics_for(self.host, mspec, dspec, self.metric_names)
                metrics = tuple(f"{m.name}:{m.version}" for m in chosen)
            for seed in self.seeds:
                job = Job(mspec.name, mspec.family, dname, seed, self.profile.name, dict(hparams), provenance,
                          metrics, skip_reason=reason, skip_kind=kind if reason is not None else None)
                versions = (mspec.version, self.host.plugin_version("models", mspec.name))
                job.key, job.model_key = job_key(job, *versions), model_key(job, *versions)
                jobs.append(job)
        return jobs if self.speed_per_seed else share_speed(self.host, jobs)

    # ------------------------------------------------------------------ run
    def run(self, jobs: list) -> tuple:
        store = Store(self.out)
        run_id = time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]
        info = RunInfo(run_id, self.profile.name, self.seeds, str(self.device), self.out,
                       environment_info(self.device, self.host.plugins), jobs)
        # The machine's fingerprint and calibration, so speed figures can be compared with another
        # machine's (docs/regression.md), and who registered what. The calibration (about a second) is
        # made again after the jobs, and rounds between jobs that run in this process, since a shared
        # machine is not equally busy all along.
        calibration = Calibration(self.device).full()
        run_info = {**info.versions, "seeds": self.seeds, "jobs": [j.key for j in jobs],
                    "machine": self._machine(calibration), "owners": plugin_owners(self.host.registry)}
        self._machine_id = run_info["machine"]["id"]
        store.start_run(run_id, self.profile.name, run_info)
        store.record_outputs(self.host.registry.metrics.values())
        self.host.pm.hook.harness_run_started(run=info)
        self.tracking.run_started(info, run_info)
        counts = {JobStatus.OK: 0, JobStatus.FAILED: 0, JobStatus.SKIPPED: 0,
                  "reused": 0, "loaded": 0, "artifacts": 0, "artifact_bytes": 0}
        bar = self.progress(len(jobs), "jobs") if self.progress else None
        todo = []
        artifacts.remove_stale_temporaries(artifacts.artifacts_dir(self.out))  # of a killed run; none is writing
        saved = self._saved_models(store) if self.resume else {}
        try:
            for job in jobs:
                if self.resume and store.job_status(job.key) in (JobStatus.OK, JobStatus.SKIPPED):
                    counts["reused"] += 1
                    if bar is not None:
                        bar.update(1)
                elif job.skip_reason is not None:
                    self._finish(store, info, job, JobResult(JobStatus.SKIPPED, job.skip_reason), counts, bar)
                else:
                    if job.origin == Origin.TRAINED and job.model_key in saved:
                        job.origin, job.origin_path = Origin.ARTIFACT, str(saved[job.model_key])
                    todo.append(job)
            if not self.executor.in_process:
                todo = self._largest_data_first(todo)
            if bar is not None and hasattr(self.executor, "watch"):
                self.executor.watch(lambda running: bar.set_postfix_str(running_line(running)))
            # Only while jobs run in this process is the machine idle between them; elsewhere they run
            # beside the coordinator. A round at most every CALIBRATION_INTERVAL_S follows the machine's
            # load through a long run without a round after every short job.
            between_jobs = self.executor.in_process
            last_round = time.monotonic()
            for i, (job, result) in enumerate(self.executor.results(self.job_runner, todo)):
                self._finish(store, info, job, result, counts, bar)
                if between_jobs and i < len(todo) - 1 and time.monotonic() - last_round >= CALIBRATION_INTERVAL_S:
                    calibration.between_jobs()
                    last_round = time.monotonic()
            if todo:
                calibration.full()
        finally:
            if bar is not None:
                bar.close()
            if calibration.full_runs > 1 or calibration.between_jobs_rounds:
                store.update_run_info(run_id, {**run_info, "machine": self._machine(calibration)})
            store.finish_run(run_id)
        summary = {**counts, "out": str(self.out), "run_id": run_id}
        self.host.pm.hook.harness_run_finished(run=info, summary=summary)
        return store, summary

    def _largest_data_first(self, jobs: list) -> list:
        """Jobs on the largest examples first, then the largest training splits (in planned order within
        one dataset): an executor that runs several at once then ends on short jobs instead of leaving
        cores idle while one long job finishes."""
        def size(job):
            try:
                data = self.job_runner.datasets.get(self.host.dataset(job.dataset))
            except UserError:
                return (0, 0)
            return (-math.prod(data.spec.event_shape), -len(data.train))

        return sorted(jobs, key=size)

    def _machine(self, calibration: Calibration) -> dict:
        return machine_info(self.device, self.executor.name, self.executor.workers, calibration)

    def _saved_models(self, store) -> dict:
        """model key -> artifact folder, for the intact artifacts of jobs the store recorded (a model saved
        by a job killed before its result was stored is not reused: that job runs again)."""
        found = {}
        for path, meta in artifacts.list_artifacts(artifacts.artifacts_dir(self.out)):
            if not meta.get("model_key") or store.job_status(meta.get("key", "")) is None:
                continue
            try:
                artifacts.verify(path, meta)
            except artifacts.ArtifactError:
                continue
            found[meta["model_key"]] = path.resolve()
        return found

    def _finish(self, store, info, job, result, counts, bar) -> None:
        if result.status != JobStatus.SKIPPED:  # every job that ran records the machine it ran on
            result.details.setdefault("machine", self._machine_id)  # the executor's, else this one
        _keep_per_example(self.out, job, result)
        store.record_job(job, result, info.run_id)
        counts[result.status] += 1
        if result.details.get("source") in (Origin.ARTIFACT, Origin.CHECKPOINT):  # restored, not trained
            counts["loaded"] += 1
        saved = result.details.get("artifact")
        if saved:
            counts["artifacts"] += 1
            counts["artifact_bytes"] += int(saved.get("bytes", 0))
        self.host.pm.hook.harness_job_finished(run=info, job=job, result=result)
        self.tracking.job_finished(job, result)
        if bar is not None:
            bar.update(1)


def _keep_per_example(out: Path, job, result) -> None:
    """Write the job's per-example values beside the results (:mod:`harness.per_example`) before its result
    is stored; a failure to write is noted in the job's details, and its numbers stand."""
    try:
        path = per_example.write(out, job, result.measurements)
    except OSError as exc:
        result.details["per_example_error"] = f"{type(exc).__name__}: {exc}"
        return
    if path is not None:
        result.details["per_example"] = path.relative_to(out).as_posix()
