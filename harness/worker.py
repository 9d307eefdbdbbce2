"""Running one job: build the model with the job's hyperparameters, fit it (or restore it from saved
weights), measure it, save it.

:class:`JobRunner` is what every executor calls, in this process or in a worker: it knows the
plugin host, the profile, the device and where data and caches live, and turns a
:class:`~harness.jobs.Job` into a :class:`~harness.jobs.JobResult`. A job that raises, produces
NaN/inf or passes its time limit gives a failed result with its reason; nothing escapes.

:class:`WorkerSetup` is the picklable description from which another process builds the same
:class:`JobRunner` (the parent's plugins included, see :meth:`harness.host.PluginHost.worker_sources`).
"""

from __future__ import annotations

import logging
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import torch

from harness.applicable_metrics import metrics_for
from harness.contracts import FitContext, MetricContext, UserError
from harness.dataset_cache import DatasetCache
from harness.jobs import Job, JobResult, JobStatus, Origin
from harness.measuring import measure, measure_variants
from harness.phases import Phases
from harness.speed_sharing import is_speed_metric
from harness.time_limit import JobTimeout, time_limit

log = logging.getLogger(__name__)

# Training gets this share of the job's time limit; the rest is kept for evaluation.
FIT_SHARE_OF_TIMEOUT = 0.6


@dataclass
class WorkerSetup:
    """Everything a worker process needs to build a :class:`JobRunner` (picklable)."""

    plugin_sources: list
    profile: str
    device: str
    data_root: str
    cache_dir: str
    metrics: Optional[list]
    job_timeout: Optional[float]
    artifacts_dir: Optional[str] = None

    def build(self) -> "JobRunner":
        from harness.host import PluginHost
        from harness.profiles import get_profile

        return JobRunner(PluginHost.from_sources(self.plugin_sources), get_profile(self.profile), self.device,
                         Path(self.data_root), Path(self.cache_dir), self.metrics, self.job_timeout,
                         artifacts_dir=Path(self.artifacts_dir) if self.artifacts_dir else None)


class JobRunner:
    """Fits and measures jobs (see the module doc). ``artifacts_dir``: where each job that fitted or
    loaded a model saves it (:mod:`harness.artifacts`); None saves nothing."""

    def __init__(self, host, profile, device="cpu", data_root: Path = Path("datasets"),
                 cache_dir: Path = Path("cache"), metrics: Optional[list] = None,
                 job_timeout: Optional[float] = None, progress: Optional[Callable] = None,
                 artifacts_dir: Optional[Path] = None):
        self.host = host
        self.profile = profile
        self.device = torch.device(device)
        self.data_root = Path(data_root)
        self.cache_dir = Path(cache_dir)
        self.metric_names = metrics
        self.job_timeout = job_timeout if job_timeout is not None else profile.job_timeout_s
        self.progress = progress  # factory: progress(total, desc, leave=...) -> tqdm-like, or None
        self.datasets = DatasetCache(self.data_root)
        self.run_cache: dict = {}
        self.artifacts_dir = Path(artifacts_dir) if artifacts_dir is not None else None

    @property
    def setup(self) -> WorkerSetup:
        return WorkerSetup(self.host.worker_sources(), self.profile.name, str(self.device), str(self.data_root),
                           str(self.cache_dir), self.metric_names, self.job_timeout,
                           str(self.artifacts_dir) if self.artifacts_dir is not None else None)

    def run(self, job: Job) -> JobResult:
        started = time.perf_counter()
        try:
            with time_limit(self.job_timeout):
                result = self._execute(job)
        except JobTimeout:
            result = JobResult(JobStatus.FAILED, f"timed out after {self.job_timeout:g} s")
        except Exception as exc:  # a failing plugin never takes the run down
            log.debug("job %s failed", job.label, exc_info=True)
            frame = traceback.extract_tb(exc.__traceback__)[-1]
            where = f"{Path(frame.filename).name}:{frame.lineno}"
            result = JobResult(JobStatus.FAILED, f"{type(exc).__name__}: {exc} (at {where})")
        finally:
            if self.device.type == "cuda":
                torch.cuda.empty_cache()
        result.seconds = time.perf_counter() - started
        return result

    def _execute(self, job: Job) -> JobResult:
        phases = Phases()
        mspec = self.host.model(job.model)
        dspec = self.host.dataset(job.dataset)
        with phases("dataset"):  # free after the worker's first job on this dataset
            data = self.datasets.get(dspec)
        with phases("build"):
            torch.manual_seed(job.seed)
            model = mspec.factory(dspec, dict(job.hparams))
            model.to(self.device)
        if job.origin == Origin.TRAINED:
            with phases("fit"):
                fit = self._fit(job, model, data)
            details = {"source": Origin.TRAINED, "fit_seconds": fit.seconds, "fit_steps": fit.steps,
                       "fit_examples": fit.examples, "stopped_at_deadline": fit.should_stop()}
        else:  # loaded: no fit, so nothing for a metric to time (MetricContext.fit is None)
            with phases("load"):
                fit, details = None, self._load(job, model)
        metrics, skipped = metrics_for(self.host, mspec, dspec, self.metric_names, job.origin)
        if job.speed_seed is not None and job.speed_seed != job.seed:
            metrics = [m for m in metrics if not is_speed_metric(m)]
            details["speed_from_seed"] = job.speed_seed
        result = JobResult(JobStatus.OK, details=details, metric_skips=skipped)
        context = dict(model_spec=mspec, dataset=data, profile=self.profile, device=self.device, seed=job.seed,
                       fit=fit, cache_dir=self.cache_dir, data_root=self.data_root,
                       feature_extractors=self.host.registry.feature_extractors, run_cache=self.run_cache,
                       phases=phases.shared)
        with phases("metrics"):
            for metric in metrics:
                measure(metric, MetricContext(model=model, **context), result)
            measure_variants(model, metrics, context, result)
        extra = model.job_details()
        result.details.update(extra if job.origin == Origin.TRAINED else {k: v for k, v in extra.items() if k != "source"})
        bad = [m.metric if m.variant is None else m.id for m in result.measurements if not m.finite]
        reasons = [f"{name}: {why}" for name, why in result.metric_failures]
        if bad:
            reasons.insert(0, "non-finite " + ", ".join(bad))
        if reasons:
            result.status, result.reason = JobStatus.FAILED, "; ".join(reasons)
        if self.artifacts_dir is not None and job.origin != Origin.SAMPLES:
            with phases("save"):
                self._save(job, model, mspec, data, result)
        result.details.update(phases.details())
        return result

    def _fit(self, job: Job, model, data) -> FitContext:
        bar = self.progress(None, f"fit {job.model}/{job.dataset}", leave=False) if self.progress else None

        def on_step(step, scalars):
            if bar is not None:
                if bar.total != fit.total_steps:  # the model says how many steps it will take
                    bar.total = fit.total_steps
                bar.update(1)
                if scalars and step % 10 == 0:
                    bar.set_postfix({k: f"{v:.3g}" for k, v in scalars.items()}, refresh=False)

        deadline = time.monotonic() + FIT_SHARE_OF_TIMEOUT * self.job_timeout if self.job_timeout else None
        fit = FitContext(self.device, job.seed, deadline=deadline, progress=on_step)
        try:
            model.fit(data.train, data.val, fit)
        finally:
            fit.finish()
            if bar is not None:
                bar.close()
        return fit

    def _load(self, job: Job, model) -> dict:
        """Restore ``model`` from the job's artifact or checkpoint (nothing to restore for external samples:
        their adapter holds them). The details say where the model came from."""
        from harness import artifacts, checkpoints

        started = time.perf_counter()
        state = None
        if job.origin == Origin.ARTIFACT:
            _, state = artifacts.load_artifact(job.origin_path)
        elif job.origin == Origin.CHECKPOINT:
            state, digest = checkpoints.load_weights(job.origin_path)
            if job.weights and digest != job.weights:
                raise UserError(f"checkpoint {job.origin_path} changed since the job was planned")
        elif job.origin != Origin.SAMPLES:
            raise ValueError(f"unknown job origin {job.origin!r}")
        if state is not None:
            model.restore_state(state)
            model.to(self.device)
        return {"source": job.origin, "loaded_from": job.origin_path, "weights_sha256": job.weights,
                "load_seconds": round(time.perf_counter() - started, 4),
                "note": "loaded, not trained: this job fitted nothing"}

    def _save(self, job: Job, model, mspec, data, result: JobResult) -> None:
        """Save the model under ``artifacts_dir`` (:func:`harness.artifacts.write_artifact`). A disk that
        refuses the files (full, a size limit) fails the job with the reason, so ``run --resume`` runs it
        again once there is room; any other failure to save is noted in the details, and the numbers stand."""
        from harness import artifacts
        from harness.storage import full

        meta = {"model": job.model, "family": job.family, "dataset": job.dataset, "seed": job.seed,
                "profile": job.profile, "hparams": job.hparams, "provenance": job.provenance,
                "model_key": job.model_key, "metrics": list(job.metrics), "status": result.status,
                "source": job.origin, "loaded_from": job.origin_path or None,
                "versions": {"harness": _harness_version(), "torch": torch.__version__,
                             "safetensors": _safetensors_version(), "model": mspec.version,
                             "plugin": self.host.plugin_version("models", mspec.name)}}
        try:
            written = artifacts.write_artifact(self.artifacts_dir, job.key, model, mspec, data, meta)
        except JobTimeout:
            raise
        except Exception as exc:
            if full.is_no_space(exc):  # the whole job fails, to run again: its numbers are not kept alone
                result.status, result.reason = JobStatus.FAILED, f"saving the model: {full.describe(exc)}"
                result.measurements, result.metric_failures, result.metric_skips = [], [], []
                return
            log.debug("saving the model of %s failed", job.label, exc_info=True)
            result.details["artifact_error"] = f"{type(exc).__name__}: {exc}"
            return
        result.details["artifact"] = {"path": f"{artifacts.ARTIFACTS_DIR}/{written.path.name}",
                                      "bytes": written.bytes, "seconds": round(written.seconds, 4)}


def _harness_version() -> str:
    import harness

    return harness.__version__


def _safetensors_version() -> str:
    import safetensors

    return safetensors.__version__
