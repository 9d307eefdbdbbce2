"""The runner: plans jobs (model x dataset x seed under a profile), runs them, measures them and
streams each result into the store as it ends.

A job that raises, produces NaN/inf or passes its time limit is recorded as failed with its reason
and the run goes on. Incompatible pairs are recorded as skipped with their reason.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import platform
import signal
import threading
import time
import traceback
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import torch

import harness
from harness.contracts import Dataset, FitContext, Measurement, MetricContext, MetricSkipped, UserError
from harness.data import provenance_hash, resolve_data_root
from harness.profiles import Profile
from harness.store import Store

log = logging.getLogger(__name__)

OK, FAILED, SKIPPED = "ok", "failed", "skipped"


class JobTimeout(Exception):
    pass


@dataclass
class Job:
    model: str
    family: str
    dataset: str
    seed: int
    profile: str
    hparams: dict = field(default_factory=dict)
    provenance: str = ""
    metrics: tuple = ()
    key: str = ""
    skip_reason: Optional[str] = None

    @property
    def label(self) -> str:
        return f"{self.model}/{self.dataset}/seed{self.seed}"


@dataclass
class JobResult:
    status: str
    reason: str = ""
    measurements: list = field(default_factory=list)
    metric_failures: list = field(default_factory=list)  # (metric name, reason)
    metric_skips: list = field(default_factory=list)  # (metric name, reason)
    seconds: float = 0.0
    details: dict = field(default_factory=dict)

    def rows(self):
        """(Measurement, status, reason) for the store: measured values, then failed/skipped metrics."""
        for m in self.measurements:
            yield m, OK if m.finite else FAILED, "" if m.finite else "non-finite value"
        for name, reason in self.metric_failures:
            yield _placeholder(name), FAILED, reason
        for name, reason in self.metric_skips:
            yield _placeholder(name), SKIPPED, reason


def _placeholder(metric: str) -> Measurement:
    return Measurement(metric, math.nan, "", "measured", higher_is_better=False)


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
        "processor": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "device": str(device),
        "plugins": {name: p.version for name, p in plugins.items()},
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def job_key(job: Job, model_version: str, plugin_version: str) -> str:
    payload = {
        "model": job.model, "model_version": model_version, "plugin_version": plugin_version,
        "dataset": job.dataset, "provenance": job.provenance, "seed": job.seed, "profile": job.profile,
        "hparams": job.hparams, "metrics": sorted(job.metrics), "harness": harness.__version__,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:32]


# ---------------------------------------------------------------------------- planning

def select_pairs(host, models: Optional[list], datasets: Optional[list], run_all: bool, profile: str):
    """(model spec, dataset spec, skip reason or None) for every pair the selection names."""
    reg = host.registry
    if run_all:
        model_specs = [reg.models[name] for name in sorted(reg.models)]
    else:
        model_specs = [host.model(name) for name in models or []]
    dataset_specs = [host.dataset(name) for name in datasets] if datasets else None
    pairs = []
    for m in model_specs:
        if dataset_specs is None:
            names = m.datasets_for(profile)
            if not names:
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
    def __init__(self, host, profile: Profile, out: Path, seeds: list, device: str = "cpu",
                 data_root: Optional[Path] = None, cache_dir: Optional[Path] = None, resume: bool = False,
                 metrics: Optional[list] = None, job_timeout: Optional[float] = None,
                 progress: Optional[Callable] = None, executor=None):
        self.host = host
        self.profile = profile
        self.out = Path(out)
        self.seeds = list(seeds)
        self.device = torch.device(device)
        self.data_root = resolve_data_root(data_root)
        self.cache_dir = Path(cache_dir) if cache_dir else self.out / "cache"
        self.resume = resume
        self.metric_names = metrics
        self.job_timeout = job_timeout if job_timeout is not None else profile.job_timeout_s
        self.progress = progress  # factory: progress(total, desc) -> tqdm-like or None
        if executor is None:
            from harness.executors import InProcess

            executor = InProcess()
        self.executor = executor
        self._datasets: dict = {}
        self.run_cache: dict = {}

    # ------------------------------------------------------------------ datasets
    def dataset(self, spec) -> Dataset:
        if spec.name not in self._datasets:
            if spec.check is not None:
                missing = spec.check(self.data_root)
                if missing:
                    raise UserError(f"dataset {spec.name!r} is not available: {missing}")
            splits = spec.load(self.data_root)
            self._datasets[spec.name] = Dataset(spec, splits, provenance_hash(splits, f"{spec.name}:{spec.version}"))
        return self._datasets[spec.name]

    def metrics_for(self, model_spec, dataset_spec):
        reg = self.host.registry
        names = self.metric_names or sorted(reg.metrics)
        chosen, skipped = [], []
        for name in names:
            metric = self.host.metric(name)
            reason = metric.incompatibility(model_spec, dataset_spec)
            (skipped if reason else chosen).append((metric, reason))
        return [m for m, _ in chosen], [(m.name, r) for m, r in skipped]

    # ------------------------------------------------------------------ plan
    def plan(self, models, datasets, run_all: bool) -> list:
        jobs = []
        for mspec, dspec, reason in select_pairs(self.host, models, datasets, run_all, self.profile.name):
            dname = dspec.name if dspec else "-"
            for seed in self.seeds:
                job = Job(mspec.name, mspec.family, dname, seed, self.profile.name, mspec.hparams(self.profile.name))
                if reason is None:
                    try:
                        job.provenance = self.dataset(dspec).provenance
                    except UserError as exc:
                        reason = str(exc)
                if reason is not None:
                    job.skip_reason = reason
                else:
                    metrics, _ = self.metrics_for(mspec, dspec)
                    job.metrics = tuple(f"{m.name}:{m.version}" for m in metrics)
                plugin = self.host.owner("models", mspec.name)
                job.key = job_key(job, mspec.version, self.host.plugins.get(plugin).version if plugin in self.host.plugins else "")
                jobs.append(job)
        return jobs

    # ------------------------------------------------------------------ run
    def run(self, jobs: list) -> tuple:
        store = Store(self.out)
        run_id = time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]
        info = RunInfo(run_id, self.profile.name, self.seeds, str(self.device), self.out,
                       environment_info(self.device, self.host.plugins), jobs)
        store.start_run(run_id, self.profile.name, {**info.versions, "seeds": self.seeds,
                                                    "jobs": [j.key for j in jobs]})
        self.host.pm.hook.harness_run_started(run=info)
        counts = {OK: 0, FAILED: 0, SKIPPED: 0, "reused": 0}
        bar = self.progress(len(jobs), "jobs") if self.progress else None
        todo = []
        try:
            for job in jobs:
                if self.resume and store.job_status(job.key) in (OK, SKIPPED):
                    counts["reused"] += 1
                    if bar is not None:
                        bar.update(1)
                elif job.skip_reason is not None:
                    self._finish(store, info, job, JobResult(SKIPPED, job.skip_reason), counts, bar)
                else:
                    todo.append(job)
            for job, result in self.executor.results(self, todo):
                self._finish(store, info, job, result, counts, bar)
        finally:
            if bar is not None:
                bar.close()
            store.finish_run(run_id)
        summary = {**counts, "out": str(self.out), "run_id": run_id}
        self.host.pm.hook.harness_run_finished(run=info, summary=summary)
        return store, summary

    def _finish(self, store, info, job, result, counts, bar) -> None:
        store.record_job(job, result, info.run_id)
        counts[result.status] += 1
        self.host.pm.hook.harness_job_finished(run=info, job=job, result=result)
        if bar is not None:
            bar.set_postfix_str(f"{job.label} {result.status}")
            bar.update(1)

    def run_job(self, job: Job) -> JobResult:
        started = time.perf_counter()
        try:
            with _time_limit(self.job_timeout):
                result = self._execute(job)
        except JobTimeout:
            result = JobResult(FAILED, f"timed out after {self.job_timeout:g} s")
        except Exception as exc:  # a failing plugin never takes the run down
            log.debug("job %s failed", job.label, exc_info=True)
            where = traceback.extract_tb(exc.__traceback__)[-1]
            result = JobResult(FAILED, f"{type(exc).__name__}: {exc} (at {Path(where.filename).name}:{where.lineno})")
        finally:
            if self.device.type == "cuda":
                torch.cuda.empty_cache()
        result.seconds = time.perf_counter() - started
        return result

    def _execute(self, job: Job) -> JobResult:
        mspec = self.host.model(job.model)
        dspec = self.host.dataset(job.dataset)
        data = self.dataset(dspec)
        torch.manual_seed(job.seed)
        model = mspec.factory(dspec, dict(job.hparams))
        model.to(self.device)
        total = job.hparams.get("steps")
        bar = self.progress(total, f"fit {job.model}/{job.dataset}", leave=False) if self.progress else None

        def on_step(step, scalars):
            if bar is not None:
                bar.update(1)
                if scalars and step % 10 == 0:
                    bar.set_postfix({k: f"{v:.3g}" for k, v in scalars.items()}, refresh=False)

        # Training gets most of the time limit; the rest is kept for evaluation.
        deadline = time.monotonic() + 0.6 * self.job_timeout if self.job_timeout else None
        fit = FitContext(self.device, job.seed, total_steps=total, deadline=deadline, progress=on_step)
        try:
            model.fit(data.train, data.val, fit)
        finally:
            fit.finish()
            if bar is not None:
                bar.close()
        details = {"fit_seconds": fit.seconds, "fit_steps": fit.steps, "fit_examples": fit.examples,
                   "stopped_at_deadline": fit.should_stop()}
        metrics, skipped = self.metrics_for(mspec, dspec)
        result = JobResult(OK, details=details, metric_skips=skipped)
        metric_seconds = result.details.setdefault("metric_seconds", {})
        for metric in metrics:
            metric_started = time.perf_counter()
            ctx = MetricContext(model=model, model_spec=mspec, dataset=data, profile=self.profile, device=self.device,
                                seed=job.seed, fit=fit, cache_dir=self.cache_dir, data_root=self.data_root,
                                feature_extractors=self.host.registry.feature_extractors, run_cache=self.run_cache)
            try:
                out = metric.compute(ctx)
            except JobTimeout:
                raise
            except MetricSkipped as exc:
                result.metric_skips.append((metric.name, str(exc)))
                continue
            except Exception as exc:
                result.metric_failures.append((metric.name, f"{type(exc).__name__}: {exc}"))
                continue
            for m in out or []:
                if not isinstance(m, Measurement):
                    raise TypeError(f"metric {metric.name} returned {type(m).__name__}, not Measurement")
                result.measurements.append(m)
            metric_seconds[metric.name] = round(time.perf_counter() - metric_started, 4)
        bad = [m.metric for m in result.measurements if not m.finite]
        reasons = [f"{name}: {why}" for name, why in result.metric_failures]
        if bad:
            reasons.insert(0, "non-finite " + ", ".join(bad))
        if reasons:
            result.status, result.reason = FAILED, "; ".join(reasons)
        return result


@contextlib.contextmanager
def _time_limit(seconds: Optional[float]):
    """Raise JobTimeout in the main thread after ``seconds`` (SIGALRM); no limit elsewhere."""
    usable = seconds and seconds > 0 and hasattr(signal, "SIGALRM") and threading.current_thread() is threading.main_thread()
    if not usable:
        yield
        return

    def on_alarm(signum, frame):
        raise JobTimeout()

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
